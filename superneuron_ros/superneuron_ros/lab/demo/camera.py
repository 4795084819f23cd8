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
A camera node that publishes generated scenes, with their ground truth, for demos and tests.

Each camera publishes ``<name>/image_raw`` (sensor_msgs/Image, rgb8) or
``<name>/image_raw/compressed`` (sensor_msgs/CompressedImage, jpeg) at ``rate`` Hz with sensor-data
QoS, like a real camera driver. The true answer of every generated-scene task for each frame goes
out on ``scene_truth`` (std_msgs/String holding JSON), keyed by camera and image stamp, so that a
client can score the answers it receives.

    python -m superneuron_ros.lab.demo.camera --ros-args -p cameras:=[front,rear] \
        -p compressed:=[rear] -p rate:=2.0
"""

import json
import sys

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from superneuron_ros.lab import scenes
from superneuron_ros.node.image_conversion import rgb_to_image


class SceneCamera(Node):
    """Publishes a new generated scene per camera at a fixed rate."""

    def __init__(self) -> None:
        """Declare parameters and start the publishing timer."""
        super().__init__('scene_camera')
        names = self.declare_parameter('cameras', ['front']).value
        compressed = set(self.declare_parameter('compressed', ['']).value) - {''}
        rate = self.declare_parameter('rate', 2.0).value
        self.size = int(self.declare_parameter('size', 96).value)
        # varied backgrounds, brightness and noise, as the demo model is trained and calibrated on
        self.varied = bool(self.declare_parameter('varied', True).value)
        seed = int(self.declare_parameter('seed', 0).value)
        self.rng = np.random.default_rng(seed)
        self.cameras = []
        for name in names:
            if name in compressed:
                publisher = self.create_publisher(
                    CompressedImage, f'{name}/image_raw/compressed', qos_profile_sensor_data)
            else:
                publisher = self.create_publisher(Image, f'{name}/image_raw',
                                                  qos_profile_sensor_data)
            self.cameras.append((name, name in compressed, publisher))
        self.truth = self.create_publisher(String, 'scene_truth', 10)
        self.timer = self.create_timer(1.0 / rate, self.publish_frames)
        self.get_logger().info(
            f'publishing {self.size}px scenes at {rate} Hz on '
            + ', '.join(p.topic_name for _, _, p in self.cameras))

    def publish_frames(self) -> None:
        """Render one scene per camera, publish it and its ground truth."""
        stamp = self.get_clock().now().to_msg()
        for name, is_compressed, publisher in self.cameras:
            scene = scenes.random_scene(self.rng, varied=self.varied)
            rgb = scenes.render(scene, (self.size, self.size))
            truth = {task: scenes.answer(task, scene) for task in scenes.TASKS}
            self.truth.publish(String(data=json.dumps({
                'camera': name, 'stamp': [stamp.sec, stamp.nanosec], 'answers': truth})))
            if is_compressed:
                _, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 95])
                msg = CompressedImage(format='jpeg', data=data.tobytes())
            else:
                msg = rgb_to_image(rgb)
            msg.header.stamp = stamp
            msg.header.frame_id = name
            publisher.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Run the scene camera until Ctrl-C."""
    rclpy.init(args=args)
    node = None
    try:
        node = SceneCamera()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
