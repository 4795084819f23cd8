# Copyright 2026 The superneuron_ros Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Tests of the ~/<camera>/annotated debug image: drawing, and publishing only to a listener.

The node runs in this process with a scripted runtime, spun by a multi-threaded executor.
"""

import threading
import time

from node_helpers import ScriptedRuntime, wait_until
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from superneuron_interfaces.msg import Answer
from superneuron_ros.node.annotated import answer_line, draw_answers, MIN_SIDE
from superneuron_ros.node.image_conversion import image_to_rgb, rgb_to_image
from superneuron_ros.node.superneuron_node import SuperneuronNode

NS, NAME = '/sn_annotated', 'sn'


def test_draw_answers_scales_small_frames_and_writes_each_line():
    """A 64 px frame becomes 256 px (integer factor); text changes only the top; input intact."""
    rgb = np.zeros((64, 48, 3), np.uint8)
    rgb[:, :, 1] = 90
    drawn = draw_answers(rgb, [answer_line('door', 'yes', 0.931), answer_line('room', 'lab', 0.5)])
    assert drawn.shape == (320, 240, 3) and drawn.dtype == np.uint8
    assert min(drawn.shape[:2]) >= MIN_SIDE
    assert (rgb[:, :, 1] == 90).all() and (rgb[:, :, 0] == 0).all()
    changed_rows = np.flatnonzero((drawn != np.kron(rgb, np.ones((5, 5, 1), np.uint8))).any(
        axis=(1, 2)))
    assert changed_rows.size and changed_rows.max() < 120  # two lines at the top, nothing below
    assert answer_line('door', 'yes', 0.931) == 'door: yes (0.93)'
    big = np.full((480, 640, 3), 7, np.uint8)
    assert draw_answers(big, []).shape == big.shape and (draw_answers(big, []) == 7).all()


@pytest.fixture
def active_node(rclpy_context):
    """Yield (node, client node) with the node active: door every frame, room at 1 Hz."""
    overrides = [Parameter('autostart', value=False), Parameter('model_path', value='/m'),
                 Parameter('profiles', value=['/p']), Parameter('cameras', value=['front']),
                 Parameter('front.topic', value=f'{NS}/front/image_raw'),
                 Parameter('standing_tasks', value=['door@front', 'room@front:1.0'])]
    node = SuperneuronNode(NAME, loader=lambda config, profiles: ScriptedRuntime(),
                           context=rclpy_context, namespace=NS, parameter_overrides=overrides)
    client = rclpy.create_node('sn_annotated_client', context=rclpy_context)
    executor = MultiThreadedExecutor(num_threads=4, context=rclpy_context)
    executor.add_node(node)
    executor.add_node(client)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert node.trigger_configure().name == 'SUCCESS'
        assert node.trigger_activate().name == 'SUCCESS'
        yield node, client
    finally:
        executor.shutdown()
        thread.join(10)
        node.release()
        node.destroy_node()
        client.destroy_node()


def _frame(stamp: int) -> Image:
    header = Header(frame_id='front_optical')
    header.stamp.sec = stamp
    return rgb_to_image(np.full((60, 80, 3), 100, np.uint8), header)


def test_annotated_image_only_while_someone_listens(active_node):
    """No image is built without a subscriber; with one, each shows the frame and the answers."""
    node, client = active_node
    answers = []
    client.create_subscription(Answer, f'{NS}/{NAME}/answers/door', answers.append, 10)
    camera = client.create_publisher(Image, f'{NS}/front/image_raw', qos_profile_sensor_data)
    wait_until(lambda: camera.get_subscription_count() > 0, what='the node subscribed')
    for stamp in range(1, 6):
        camera.publish(_frame(stamp))
        time.sleep(0.1)
    wait_until(lambda: len(answers) >= 2, what='standing answers without a viewer')
    assert node._annotated.published == 0  # answered, but nothing drawn: nobody listens

    images = []
    topic = f'{NS}/{NAME}/front/annotated'
    client.create_subscription(Image, topic, images.append, 1)
    wait_until(lambda: node._annotated.wanted('front'), what='the viewer matched')
    before = len(answers)

    def published():
        camera.publish(_frame(100 + len(images)))
        time.sleep(0.05)
        return len(images) >= 3
    wait_until(published, timeout=15.0, what='annotated images')
    image = images[-1]
    assert image.encoding == 'rgb8' and (image.width, image.height) == (320, 240)
    assert image.header.frame_id == 'front_optical' and image.header.stamp.sec >= 100
    rgb = image_to_rgb(image)
    assert (rgb[-10:] == 100).all() and not (rgb[:40] == 100).all()  # text at the top only
    # At most one image per answered batch: never more images than door answers.
    assert node._annotated.published <= len(answers) - before + 1
    assert client.count_publishers(topic) == 1
