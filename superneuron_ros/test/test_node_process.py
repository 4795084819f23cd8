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
End-to-end tests: the node in its own process, a tiny model, calibrated profiles, real ROS.

The node is started as the launch file starts it (params file, namespace, remap, log level) and
reused by the tests of this module; the last test stops it with SIGINT. Two more node processes
check that a missing model folder and bad profiles fail configure without taking the node down.
Load, refusals and bounded input costs are in test_node_load.py.
"""

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_helpers import (active_node, DEEP_REPLIES, fastdds_files_of, NodeProcess, orphaned,
                          wait_until, write_params)
from node_process_fixtures import image_msg, png_msg, scene_image, TASKS
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool
from superneuron_interfaces.msg import Answer, LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks

pytest_plugins = ['node_process_fixtures']

NS = '/sn_proc'
NODE = f'{NS}/superneuron'
FRONT_TOPIC = '/sn_proc_cam/front'  # the launch file's image_topic remap target
REAR_TOPIC = f'{NS}/rear/image_raw/compressed'


@pytest.fixture(scope='module')
def node(assets):
    """Start the node under test: active, three standing tasks, three cameras."""
    params = write_params(assets['root'] / 'node.yaml', {
        'model_path': str(assets['model']), 'quantization': 'nf4', 'device': 'cpu',
        'profiles': [str(assets['profiles'])], 'cameras': ['front', 'rear', 'side'],
        'front': {'topic': '/camera/image_raw'},
        'rear': {'transport': 'compressed'},  # default topic rear/image_raw/compressed
        'standing_tasks': ['red_present@front', 'shape_count@front:2.0', 'red_present@rear'],
        'max_image_age': 2.0, 'max_image_pixels': 10000, 'diagnostics_period': 0.5})
    with active_node(params, assets['root'] / 'node.log', NS,
                     remaps=[('/camera/image_raw', FRONT_TOPIC)]) as process:
        yield process


def _ask(client, **fields) -> Ask.Response:
    return client.call(Ask, f'{NODE}/ask', Ask.Request(**fields))


def _publish_until_answered(client, publisher, msg, camera: str, stamp: int) -> Ask.Response:
    """Publish `msg` (best effort) until an Ask on `camera` answers about its stamp."""
    def answered():
        publisher.publish(msg)
        time.sleep(0.05)
        response = _ask(client, tasks=['red_present'], camera=camera)
        return (response if response.success and response.answers[0].header.stamp.sec == stamp
                else None)
    return wait_until(answered, timeout=30.0, what=f'a frame stamped {stamp} on {camera}')


def test_list_tasks_describes_the_calibrated_tasks(node, client, reference):
    """The list_tasks service returns each profile with its labels, layer, neurons, accuracy."""
    tasks = client.call(ListTasks, f'{NODE}/list_tasks', ListTasks.Request()).tasks
    assert [t.name for t in tasks] == list(reference.tasks)
    for task in tasks:
        info = reference.tasks[task.name]
        assert list(task.labels) == list(info.labels) and task.question == info.question
        assert (task.exit_layer, task.num_neurons) == (info.exit_layer, info.num_neurons)
        assert task.calibration_accuracy == pytest.approx(info.calibration_accuracy, abs=1e-6)


def test_ask_on_newest_frame_and_on_request_image_match_the_core(node, client, reference):
    """Camera frames (raw and compressed) and request images give the core's own answers."""
    front = client.camera(Image, FRONT_TOPIC)
    rear = client.camera(CompressedImage, REAR_TOPIC)
    first, second = scene_image(1), scene_image(2)
    _publish_until_answered(client, front, image_msg(first, 1), 'front', 1)
    on_camera = _publish_until_answered(client, front, image_msg(second, 2), '', 2).answers[0]
    expected = reference.answer(second, ['red_present']).predictions[0]
    assert on_camera.label == expected.label and on_camera.label_index == expected.label_index
    assert list(on_camera.scores) == pytest.approx(expected.scores)
    assert on_camera.exit_layer == expected.exit_layer and on_camera.latency_ms > 0
    for task in TASKS:
        response = _ask(client, tasks=[task], image=image_msg(first, 77))
        expected = reference.answer(first, [task]).predictions[0]
        [answer] = response.answers
        assert response.success and answer.header.stamp.sec == 77
        assert (answer.task, answer.label) == (task, expected.label)
        assert list(answer.scores) == pytest.approx(expected.scores)
        assert answer.confidence == pytest.approx(expected.confidence)
    compressed = _publish_until_answered(client, rear, png_msg(second, 3), 'rear', 3)
    assert list(compressed.answers[0].scores) == pytest.approx(list(on_camera.scores))


def test_several_questions_in_one_call_equal_separate_calls(node, client, reference):
    """Ask with tasks [shape_count, red_present] answers both, each as its own call would."""
    image = image_msg(scene_image(11), 11)
    together = _ask(client, tasks=['shape_count', 'red_present'], image=image)
    assert together.success, together.error
    assert [a.task for a in together.answers] == ['shape_count', 'red_present']
    for answer in together.answers:
        alone = _ask(client, tasks=[answer.task], image=image).answers[0]
        assert (answer.label, answer.label_index) == (alone.label, alone.label_index)
        assert list(answer.scores) == pytest.approx(list(alone.scores), abs=1e-5)
        assert answer.header.stamp.sec == 11
    expected = reference.answer(scene_image(11), ['shape_count', 'red_present']).predictions
    assert [a.label for a in together.answers] == [p.label for p in expected]


def test_standing_answers_carry_the_image_header_on_per_camera_topics(node, client, reference):
    """Each frame is answered for the every-frame task; each camera has its own topic."""
    answers = client.collect(Answer, f'{NODE}/answers/red_present/front')
    yes = client.collect(Bool, f'{NODE}/answers/red_present/front/yes')
    rear_answers = client.collect(Answer, f'{NODE}/answers/red_present/rear')
    counts = client.collect(Answer, f'{NODE}/answers/shape_count')
    front = client.camera(Image, FRONT_TOPIC)
    rear = client.camera(CompressedImage, REAR_TOPIC)
    wait_until(lambda: client.node.count_subscribers(f'{NODE}/answers/red_present/front')
               and front.get_subscription_count() and rear.get_subscription_count(),
               what='connections')
    time.sleep(0.5)
    images = {100 + i: scene_image(100 + i) for i in range(12)}
    for stamp, rgb in images.items():
        front.publish(image_msg(rgb, stamp, 'front_optical'))
        if stamp % 3 == 0:
            rear_msg = png_msg(rgb, stamp)
            rear_msg.header.frame_id = 'rear_optical'
            rear.publish(rear_msg)
        time.sleep(0.1)
    wait_until(lambda: len(answers) >= 6 and [c for c in counts if c.header.stamp.sec in images]
               and rear_answers, what='standing answers')
    ours = [a for a in answers if a.header.stamp.sec in images]
    assert len(ours) >= 6
    for answer in ours:
        assert answer.header.frame_id == 'front_optical' and answer.task == 'red_present'
        expected = reference.answer(images[answer.header.stamp.sec],
                                    ['red_present']).predictions[0]
        assert answer.label == expected.label
        assert list(answer.scores) == pytest.approx(expected.scores)
        assert 0 < answer.latency_ms < 10000
    assert {a.header.frame_id for a in rear_answers} == {'rear_optical'}
    assert {a.header.stamp.sec for a in rear_answers} <= {s for s in images if s % 3 == 0}
    wait_until(lambda: len(yes) >= len(ours), what='yes/no booleans')
    assert [b.data for b in yes[-len(ours):]] == [a.label == 'yes'
                                                  for a in answers[-len(ours):]]
    # shape_count runs at 2 Hz: far fewer answers than the 12 frames of about 1.2 s.
    counts = [c for c in counts if c.header.stamp.sec in images]
    assert 1 <= len(counts) <= 4
    assert all(c.label in {'1', '2', '3', '4'} and c.header.frame_id == 'front_optical'
               for c in counts)


def test_latency_and_diagnostics_have_sane_values(node, client):
    """~/latency and /diagnostics arrive about every diagnostics_period with plausible values."""
    latency = client.collect(LatencyStats, f'{NODE}/latency')
    diagnostics = client.collect(DiagnosticArray, '/diagnostics')
    wait_until(lambda: [m for m in latency if m.task == 'red_present' and m.camera == 'front'],
               timeout=10.0, what='latency stats')
    wait_until(lambda: [d for d in diagnostics if d.status
                        and d.status[0].name == f'{NODE}: model'], what='diagnostics')
    stats = [m for m in latency if m.task == 'red_present' and m.camera == 'front'][-1]
    assert stats.node == NODE and stats.answered_frames >= 6
    stages = stats.preprocess_ms + stats.vision_ms + stats.decoder_ms + stats.classify_ms
    assert 0 < stages <= stats.total_ms + 1e-3
    assert 0 < stats.p50_ms <= stats.p95_ms < 10000
    assert stats.answers_per_second >= 0 and stats.header.frame_id == 'front_optical'
    series = {(m.task, m.camera) for m in latency}
    assert {('red_present', 'ask:front'), ('shape_count', 'front')} <= series
    status = {s.name: s for s in [d for d in diagnostics if d.status
                                  and d.status[0].name == f'{NODE}: model'][-1].status}
    assert status[f'{NODE}: model'].level == DiagnosticStatus.OK
    assert {s.hardware_id for s in status.values()} == {NODE}  # two instances stay apart
    assert status[f'{NODE}: device'].message == 'cpu'
    assert status[f'{NODE}: quantization self-test'].level == DiagnosticStatus.OK
    assert 'nf4' in status[f'{NODE}: quantization self-test'].message
    rear = {kv.key: kv.value for kv in status[f'{NODE}: camera rear'].values}
    assert rear['topic'] == REAR_TOPIC and int(rear['frames received']) >= 1
    side = status[f'{NODE}: camera side']
    assert side.level == DiagnosticStatus.WARN and 'no frame received yet' in side.message
    answers = {kv.key: kv.value for kv in status[f'{NODE}: answers'].values}
    assert int(answers['red_present@front answered']) >= 6
    assert float(answers['red_present@front answers/s']) > 0


def _bad_requests(good: Image) -> list[tuple[dict, str]]:
    short, long, wrong, empty = (image_msg(scene_image(5), 5) for _ in range(4))
    short.data = bytes(short.data)[:-3]
    long.data = bytes(long.data) + b'\0' * 3
    wrong.encoding = 'yuv422'
    empty.height = 0
    return [
        ({'tasks': ['no_such_task'], 'image': good}, 'unknown task'),
        ({'tasks': ['red_present', 'red_present'], 'image': good}, 'more than once'),
        ({'tasks': ['red_present'], 'camera': 'no_such_camera'}, 'unknown camera'),
        ({'tasks': ['red_present'], 'camera': 'side'}, 'no frame received yet'),
        ({'tasks': ['red_present'], 'camera': 'front', 'max_age': 0.001}, 'old'),
        ({'tasks': ['red_present'], 'image': wrong}, 'unsupported image encoding'),
        ({'tasks': ['red_present'], 'image': short}, 'step x height'),
        ({'tasks': ['red_present'], 'image': long}, 'step x height'),
        ({'tasks': ['red_present'], 'image': empty}, 'empty'),
        ({'tasks': ['red_present'], 'image': image_msg(scene_image(6, size=128), 6)},
         'max_image_pixels'),
    ]


def test_bad_requests_fail_with_advice_and_the_next_is_answered(node, client):
    """Each bad request gets success=false and an error saying what to do; then all is well."""
    good = image_msg(scene_image(3), 3)
    _publish_until_answered(client, client.camera(Image, FRONT_TOPIC),
                            image_msg(scene_image(4), 4), 'front', 4)
    time.sleep(0.05)
    for fields, words in _bad_requests(good):
        response = _ask(client, **fields)
        assert not response.success and response.refusal == '', fields
        assert words in response.error, (fields, response.error)
        assert list(response.answers) == []
        assert _ask(client, tasks=['red_present'], image=good).success
    assert node.process.poll() is None


def test_sixteen_concurrent_calls_are_all_answered(node, client, reference):
    """16 Ask calls in flight at once, on 8 different images, all get their own answer."""
    images = [scene_image(200 + i) for i in range(8)]
    clients = [client.node.create_client(Ask, f'{NODE}/ask', qos_profile=DEEP_REPLIES)
               for _ in range(16)]
    try:
        for ask_client in clients:
            assert ask_client.wait_for_service(timeout_sec=10.0)
        futures = [ask_client.call_async(Ask.Request(
            tasks=[TASKS[i % 2]], image=image_msg(images[i % 8], 200 + i)))
            for i, ask_client in enumerate(clients)]
        responses = [client.wait(future, timeout=120.0) for future in futures]
    finally:
        for ask_client in clients:
            client.node.destroy_client(ask_client)
    for i, response in enumerate(responses):
        expected = reference.answer(images[i % 8], [TASKS[i % 2]]).predictions[0]
        assert response.success, response.error
        [answer] = response.answers
        assert answer.header.stamp.sec == 200 + i and answer.task == TASKS[i % 2]
        assert list(answer.scores) == pytest.approx(expected.scores)


def test_sigint_exits_with_zero_and_leaves_no_shared_memory(node):
    """Ctrl-C stops the active node cleanly: exit code 0, none of its /dev/shm files left."""
    owned = fastdds_files_of(node.process.pid)
    assert owned, 'the node maps no Fast DDS shared-memory file: nothing would be checked'
    assert node.interrupt(timeout=60.0) == 0, node.log()[-3000:]
    time.sleep(0.5)
    assert orphaned(owned) == set()
    log = node.log()
    assert 'Traceback' not in log and 'Failed to complete transition' not in log
    assert 'shutting down' in log


def _status(diagnostics: list, name: str):
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == name:
                return status
    return None


def _set_profiles(client, name: str, paths: list[str]) -> bool:
    value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=paths)
    response = client.call(SetParameters, f'{name}/set_parameters', SetParameters.Request(
        parameters=[ParameterMsg(name='profiles', value=value)]))
    return response.results[0].successful


def _transition(client, name: str, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return client.call(ChangeState, f'{name}/change_state', request, timeout=180.0).success


NOMODEL = '/sn_nomodel/superneuron'


def test_missing_model_folder_fails_configure_and_shows_error(assets, client):
    """A wrong model_path leaves the node up, unconfigured, with an ERROR saying what to fix."""
    params = write_params(assets['root'] / 'nomodel.yaml', {
        'model_path': str(assets['root'] / 'no_such_model'), 'device': 'cpu',
        'profiles': [str(assets['profiles'])], 'diagnostics_period': 0.5})
    process = NodeProcess(params, assets['root'] / 'nomodel.log', namespace='/sn_nomodel')
    diagnostics = client.collect(DiagnosticArray, '/diagnostics')
    try:
        status = wait_until(lambda: (s := _status(diagnostics, NOMODEL + ': model'))
                            and s.level == DiagnosticStatus.ERROR and s, timeout=120.0,
                            what='an ERROR model status')
        assert 'no_such_model' in status.message and 'does not exist' in status.message
        assert 'model_path' in status.message
        state = client.call(GetState, '/sn_nomodel/superneuron/get_state', GetState.Request())
        assert state.current_state.label == 'unconfigured'
        assert 'configure failed' in process.log()
        assert process.interrupt() == 0
    finally:
        process.close()


def test_bad_profiles_fail_configure_then_good_ones_recover(assets, client):
    """A corrupt profile, then one made for another model, fail configure; fixing it recovers."""
    name = '/sn_badprofile/superneuron'
    params = write_params(assets['root'] / 'badprofile.yaml', {
        'model_path': str(assets['model']), 'device': 'cpu', 'quantization': 'nf4',
        'profiles': [str(assets['corrupt'])], 'diagnostics_period': 0.5})
    process = NodeProcess(params, assets['root'] / 'badprofile.log', namespace='/sn_badprofile')
    diagnostics = client.collect(DiagnosticArray, '/diagnostics')
    try:
        status = wait_until(lambda: (s := _status(diagnostics, f'{name}: model'))
                            and s.level == DiagnosticStatus.ERROR and s, timeout=120.0,
                            what='an ERROR for the corrupt profile')
        assert 'corrupt' in status.message
        refused = client.call(Ask, f'{name}/ask', Ask.Request(
            tasks=['shape_count'], image=image_msg(scene_image(9), 9)))
        assert (refused.success, refused.refusal) == (False, 'inactive')  # at once, not lost
        assert 'unconfigured' in refused.error
        assert _set_profiles(client, name, [str(assets['other'])])
        assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)
        status = wait_until(lambda: (s := _status(diagnostics, f'{name}: model'))
                            and 'calibrated on' in s.message and s, what='a mismatch ERROR')
        assert status.level == DiagnosticStatus.ERROR and 'recalibrate' in status.message.lower()
        assert _set_profiles(client, name, [str(assets['profiles'])])
        assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
        assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
        response = client.call(Ask, f'{name}/ask', Ask.Request(
            tasks=['shape_count'], image=image_msg(scene_image(9), 9)))
        assert response.success and response.answers[0].label in {'1', '2', '3', '4'}
        wait_until(lambda: _status(diagnostics, f'{name}: model').level
                   == DiagnosticStatus.OK, what='an OK model status after recovery')
        assert process.interrupt() == 0
    finally:
        process.close()
