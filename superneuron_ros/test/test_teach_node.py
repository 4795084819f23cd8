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
~/teach end to end: the node in its own process, a tiny model, real rclpy actions.

The node loads a tiny LLaVA three layers deep (max_exit_layer 2) with one calibrated profile
and a standing task on it. The tests record yellow_present frames with ~/record, teach it from
the recorded set, ask it, see the
standing answers go on during the teach, cancel a teach (nothing left behind), reject a second
goal while one runs, and refuse a layer beyond the loaded depth.
"""

import math
import threading
import time

from action_msgs.msg import GoalStatus
from calibrated_fixture import torch_threads
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from node_helpers import active_node, RosClient, wait_until, write_params
from node_process_fixtures import image_msg, scene_image
import numpy as np
import pytest
from rclpy.action import ActionClient
from sensor_msgs.msg import Image
from superneuron_interfaces.action import Teach
from superneuron_interfaces.msg import Answer
from superneuron_interfaces.srv import Ask, ListTasks, Record
from superneuron_ros.lab import scenes
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.tasks import load_labelled_set
from test_interfaces import declared_fields, idl_type, uncommented_fields

NS = '/sn_teach'
NODE = f'{NS}/superneuron'
CAMERA = '/sn_teach_cam/image_raw'
YELLOW = scenes.TASKS['yellow_present']
OPTIONS = CalibrationOptions(k=5, sizes=(4, 8), folds=3, repeats=1, rank_folds=3,
                             baseline=False, progress=False, quantization='nf4', device='cpu',
                             max_layer=1)


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    """Start the node: layers 0..2 loaded, red_present standing on the test camera."""
    root = tmp_path_factory.mktemp('teach_node')
    data_dir = root / 'data'
    with torch_threads(1):
        model = build_model_folder(root / 'model', 'llava', seed=0)
        write_dataset(root / 'red', n=24, seed=0, size=32, tasks=['red_present'])
        red = scenes.TASKS['red_present']
        calibrate(model, red, load_labelled_set(root / 'red' / 'red_present.jsonl', red),
                  OPTIONS).save(root / 'profiles' / 'red_present')
        # A bigger set for the cancelled teach (the taught one is recorded by the test).
        write_dataset(data_dir / 'datasets' / 'green_present', n=240, seed=1, size=32,
                      tasks=['green_present'])
    params = write_params(root / 'node.yaml', {
        'model_path': str(model), 'quantization': 'nf4', 'device': 'cpu',
        'profiles': [str(root / 'profiles')], 'max_exit_layer': 2, 'data_dir': str(data_dir),
        'cameras': ['front'], 'front': {'topic': CAMERA},
        'standing_tasks': ['red_present@front'], 'max_image_age': 5.0,
        'diagnostics_period': 0.5})
    with active_node(params, root / 'node.log', NS) as process:
        yield {'process': process, 'data_dir': data_dir}


@pytest.fixture
def ros():
    """Yield a test client with an action client for ~/teach."""
    client = RosClient('sn_teach_client')
    client.teach = ActionClient(client.node, Teach, f'{NODE}/teach')
    try:
        assert client.teach.wait_for_server(timeout_sec=10.0), 'no ~/teach action server'
        yield client
    finally:
        client.teach.destroy()
        client.close()


def _goal(task: str, dataset: str = '', **fields) -> Teach.Goal:
    spec = scenes.TASKS.get(task, YELLOW)
    return Teach.Goal(task=task, question=spec.question, labels=list(spec.labels),
                      dataset=dataset, **fields)


def _send(ros, goal, feedback=None):
    """Send a goal; return its goal handle (accepted or not)."""
    return ros.wait(ros.teach.send_goal_async(goal, feedback_callback=feedback), 30.0)


def test_teach_definition_is_documented():
    """Every field of the installed Teach.action is commented and generated in order."""
    from ament_index_python.packages import get_package_share_directory
    from pathlib import Path
    share = Path(get_package_share_directory('superneuron_interfaces'))
    text = (share / 'action' / 'Teach.action').read_text(encoding='utf-8')
    assert uncommented_fields(text) == []
    parts = declared_fields(text)
    for msg_type, fields in zip((Teach.Goal, Teach.Result, Teach.Feedback), parts):
        assert list(msg_type.get_fields_and_field_types().items()) == fields
    assert idl_type('string[]') == 'sequence<string>' and len(parts) == 3


def _record(ros, count: int = 40) -> None:
    """Record `count` labelled scenes (half yes, half no) with ~/record, images in the request."""
    rng = np.random.default_rng(5)
    for i in range(count):
        label = YELLOW.labels[i % 2]
        scene = scenes.sample_scene_for(YELLOW.name, label, rng)
        request = Record.Request(task=YELLOW.name, label=label, labels=list(YELLOW.labels),
                                 question=YELLOW.question,
                                 image=image_msg(scenes.render(scene, (32, 32)), 1000 + i))
        response = ros.call(Record, f'{NODE}/record', request)
        assert response.success, response.error
    assert list(response.counts) == [count // 2, count // 2]


def test_record_teach_then_ask_while_standing_answers_go_on(node, ros):
    """Record, teach from the recorded set: feedback, a loaded profile, answers, standing."""
    _record(ros)
    camera = ros.camera(Image, CAMERA)
    answers = ros.collect(Answer, f'{NODE}/answers/red_present')
    stop = threading.Event()

    def publish() -> None:
        stamp = 1
        while not stop.is_set():
            camera.publish(image_msg(scene_image(stamp, 32), stamp))
            stamp += 1
            time.sleep(0.1)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        wait_until(lambda: answers, timeout=30.0, what='a standing answer before the teach')
        feedback = []
        handle = _send(ros, _goal('yellow_present'), lambda msg: feedback.append(msg.feedback))
        assert handle.accepted
        started, before = time.monotonic(), len(answers)
        response = ros.wait(handle.get_result_async(), 120.0)
        during = len(answers) - before
        seconds = time.monotonic() - started
    finally:
        stop.set()
        publisher.join(5)
    result = response.result
    assert response.status == GoalStatus.STATUS_SUCCEEDED, result.error
    assert result.success and not result.error
    assert result.profile_path == str(node['data_dir'] / 'profiles' / 'yellow_present')
    assert 0 <= result.exit_layer <= 2 and result.num_examples == 40
    assert 0.0 <= result.cv_accuracy <= 1.0 and result.cv_accuracy_std >= 0.0
    assert math.isnan(result.model_accuracy) and '--methods restricted' in (
        result.model_accuracy_note)
    stages = [msg.stage for msg in feedback]
    assert 'capturing' in stages and 'searching' in stages
    assert max(msg.images_captured for msg in feedback) == 40
    assert all(msg.images_total == 40 and msg.layers_total == 3 for msg in feedback)
    # The worker kept answering the standing task while the teach ran (calls interleave).
    assert during >= 1 or seconds < 1.0, f'no standing answer in {seconds:.1f} s of teaching'
    tasks = ros.call(ListTasks, f'{NODE}/list_tasks', ListTasks.Request()).tasks
    assert {t.name for t in tasks} == {'red_present', 'yellow_present'}
    image = image_msg(scene_image(99, 32), 99)
    reply = ros.call(Ask, f'{NODE}/ask', Ask.Request(tasks=['yellow_present', 'red_present'],
                                                     image=image))
    assert reply.success, reply.error
    assert [a.task for a in reply.answers] == ['yellow_present', 'red_present']
    assert reply.answers[0].label in YELLOW.labels


def test_cancel_rejects_a_second_goal_and_leaves_nothing(node, ros):
    """A second goal is rejected while one runs; a cancelled teach writes nothing."""
    feedback = []
    handle = _send(ros, _goal('green_present'), lambda m: feedback.append(m))
    assert handle.accepted
    wait_until(lambda: feedback, timeout=30.0, what='the first feedback')
    second = _send(ros, _goal('yellow_other'))
    assert not second.accepted
    wait_until(lambda: 'a teach is running' in node['process'].log(), timeout=10.0,
               what='the logged reason of the rejection')
    ros.wait(handle.cancel_goal_async(), 30.0)
    response = ros.wait(handle.get_result_async(), 60.0)
    assert response.status == GoalStatus.STATUS_CANCELED, response.result.error
    assert not response.result.success and 'cancelled' in response.result.error
    profiles = node['data_dir'] / 'profiles'
    assert sorted(p.name for p in profiles.iterdir()) == ['yellow_present']  # no temp folder
    tasks = ros.call(ListTasks, f'{NODE}/list_tasks', ListTasks.Request()).tasks
    assert 'green_present' not in {t.name for t in tasks}


def test_deeper_than_loaded_and_bad_requests_are_refused(node, ros):
    """A layer beyond the loaded depth, a path outside data_dir, a taken name: clear errors."""
    cases = [(_goal('green_present', max_exit_layer=3), 'deeper than the layers the node loaded'),
             (_goal('yellow_out', '/etc'), 'outside data_dir'),
             (_goal('yellow_present'), 'already loaded'),
             (_goal('Bad Name'), 'not a valid task name')]
    for goal, message in cases:
        handle = _send(ros, goal)
        assert handle.accepted
        response = ros.wait(handle.get_result_async(), 60.0)
        assert response.status == GoalStatus.STATUS_ABORTED, goal
        assert message in response.result.error, response.result.error
    assert not (node['data_dir'] / 'profiles' / 'green_present').exists()


def test_a_goal_is_rejected_while_the_node_is_inactive(node, ros):
    """Deactivated, the node rejects teach goals (and logs why); activated, it accepts again."""
    def transition(which: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=which))
        return ros.call(ChangeState, f'{NODE}/change_state', request, timeout=60.0).success
    assert transition(Transition.TRANSITION_DEACTIVATE)
    try:
        assert not _send(ros, _goal('blue_present')).accepted
        wait_until(lambda: 'the node is not active' in node['process'].log(), timeout=10.0,
                   what='the logged reason of the rejection')
    finally:
        assert transition(Transition.TRANSITION_ACTIVATE)
    handle = _send(ros, _goal('blue_present'))  # no dataset recorded for it: a clear error
    assert handle.accepted
    response = ros.wait(handle.get_result_async(), 60.0)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert 'does not exist' in response.result.error and '~/record' in response.result.error


def test_sigint_during_a_teach_stops_it_and_leaves_whole_profiles(node, ros):
    """SIGINT mid-teach: the goal is aborted saying why, the node exits 0, no partial folder."""
    from superneuron_ros.method.profiles import Profile
    feedback = []
    handle = _send(ros, _goal('green_present'), lambda m: feedback.append(m))
    assert handle.accepted
    wait_until(lambda: feedback, timeout=30.0, what='the first feedback')
    result = handle.get_result_async()
    assert node['process'].interrupt() == 0
    response = ros.wait(result, 30.0)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert 'shutting down' in response.result.error
    profiles = node['data_dir'] / 'profiles'
    assert sorted(p.name for p in profiles.iterdir()) == ['yellow_present']
    assert Profile.load(profiles / 'yellow_present').task.name == 'yellow_present'
