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
"""

import shutil
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_helpers import (fastdds_files, NodeProcess, orphaned_fastdds_files, RosClient,
                          wait_until, write_params)
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Header
from superneuron_interfaces.msg import Answer, LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks
from superneuron_ros.lab import scenes
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.tasks import load_labelled_set
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.loading import LoadConfig

NS = '/sn_proc'
NODE = f'{NS}/superneuron'
FRONT_TOPIC = '/sn_proc_cam/front'  # the launch file's image_topic remap target
REAR_TOPIC = f'{NS}/rear/image_raw/compressed'
TASKS = ('red_present', 'shape_count')
OPTIONS = CalibrationOptions(k=5, report_k=(1, 5), folds=3, baseline=False, progress=False,
                             quantization='nf4', device='cpu')


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """Build two tiny models, calibrate profiles on both, and make a corrupt copy of one."""
    root = tmp_path_factory.mktemp('node_process')
    model = build_model_folder(root / 'model', 'llava', seed=0)
    other = build_model_folder(root / 'other_model', 'llava', seed=1)
    scenes.write_dataset(root / 'data', n=24, seed=0, size=64, tasks=list(TASKS))
    for folder, tasks, out in ((model, TASKS, 'profiles'), (other, TASKS[:1], 'other')):
        for name in tasks:
            examples = load_labelled_set(root / 'data' / f'{name}.jsonl', scenes.TASKS[name])
            result = calibrate(folder, scenes.TASKS[name], examples, OPTIONS)
            result.profile.save(root / out / name)
    shutil.copytree(root / 'profiles' / 'red_present', root / 'corrupt' / 'red_present')
    (root / 'corrupt' / 'red_present' / 'neurons.safetensors').write_bytes(b'\0garbage' * 9)
    return {'root': root, 'model': model, 'profiles': root / 'profiles',
            'other': root / 'other', 'corrupt': root / 'corrupt'}


@pytest.fixture(scope='module')
def reference(assets):
    """Load the core Runtime on the same model and profiles in this process, for comparison."""
    runtime = Runtime.load(LoadConfig(str(assets['model']), 'nf4', 'cpu'), [assets['profiles']])
    yield runtime
    runtime.close()


@pytest.fixture
def client():
    """Yield a test client with a context of this test's own, spun by a daemon thread."""
    ros = RosClient('sn_process_client')
    try:
        yield ros
    finally:
        ros.close()


@pytest.fixture(scope='module')
def node(assets):
    """Start the node under test: active, two standing tasks, three cameras."""
    params = write_params(assets['root'] / 'node.yaml', {
        'model_path': str(assets['model']), 'quantization': 'nf4', 'device': 'cpu',
        'profiles': [str(assets['profiles'])], 'cameras': ['front', 'rear', 'side'],
        'front': {'topic': '/camera/image_raw'},
        'rear': {'transport': 'compressed'},  # default topic rear/image_raw/compressed
        'standing_tasks': ['red_present@front', 'shape_count@front:2.0'],
        'max_image_age': 2.0, 'max_image_pixels': 10000, 'diagnostics_period': 0.5})
    shm_before = fastdds_files()
    process = NodeProcess(params, assets['root'] / 'node.log', namespace=NS,
                          remaps=[('/camera/image_raw', FRONT_TOPIC)], log_level='info')
    process.shm_before = shm_before
    try:
        waiter = RosClient('sn_process_waiter')
        try:
            waiter.wait_for_service(Ask, f'{NODE}/ask', timeout=180.0, process=process)
        finally:
            waiter.close()
        yield process
    finally:
        process.close()


def _scene_image(seed: int, size: int = 64) -> np.ndarray:
    return scenes.render(scenes.random_scene(np.random.default_rng(seed)), (size, size))


def _msg(rgb: np.ndarray, stamp: int, frame_id: str = 'front_optical') -> Image:
    header = Header(frame_id=frame_id)
    header.stamp.sec = stamp
    return rgb_to_image(rgb, header)


def _compressed(rgb: np.ndarray, stamp: int) -> CompressedImage:
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png')
    msg.header.stamp.sec = stamp
    msg.data = png.tobytes()
    return msg


def _ask(client, **fields) -> Ask.Response:
    return client.call(Ask, f'{NODE}/ask', Ask.Request(**fields))


def _publish_until_answered(client, publisher, msg, camera: str, stamp: int) -> Ask.Response:
    """Publish `msg` (best effort) until an Ask on `camera` answers about its stamp."""
    def answered():
        publisher.publish(msg)
        time.sleep(0.05)
        response = _ask(client, task='red_present', camera=camera)
        return response if response.success and response.image_stamp.sec == stamp else None
    return wait_until(answered, timeout=30.0, what=f'a frame stamped {stamp} on {camera}')


def test_list_tasks_describes_the_calibrated_tasks(node, client, reference):
    """The list_tasks service returns each profile with its labels, layer and neurons."""
    tasks = client.call(ListTasks, f'{NODE}/list_tasks', ListTasks.Request()).tasks
    assert [t.name for t in tasks] == list(reference.tasks)
    for task in tasks:
        info = reference.tasks[task.name]
        assert list(task.labels) == list(info.labels) and task.question == info.question
        assert task.exit_layer == info.exit_layer and task.num_neurons == 5
        assert 0.0 <= task.calibration_accuracy <= 1.0


def test_ask_on_newest_frame_and_on_request_image_match_the_core(node, client, reference):
    """Camera frames (raw and compressed) and request images give the core's own answers."""
    front = client.camera(Image, FRONT_TOPIC)
    rear = client.camera(CompressedImage, REAR_TOPIC)
    first, second = _scene_image(1), _scene_image(2)
    _publish_until_answered(client, front, _msg(first, 1), 'front', 1)
    on_camera = _publish_until_answered(client, front, _msg(second, 2), '', 2)  # default camera
    expected = reference.answer(second, ['red_present']).predictions[0]
    assert on_camera.label == expected.label and on_camera.label_index == expected.label_index
    assert list(on_camera.scores) == pytest.approx(expected.scores)
    assert on_camera.exit_layer == expected.exit_layer and on_camera.latency_ms > 0
    for task in TASKS:
        response = _ask(client, task=task, image=_msg(first, 77))
        expected = reference.answer(first, [task]).predictions[0]
        assert response.success and response.image_stamp.sec == 77
        assert (response.task, response.label) == (task, expected.label)
        assert list(response.scores) == pytest.approx(expected.scores)
        assert response.confidence == pytest.approx(expected.confidence)
    compressed = _publish_until_answered(client, rear, _compressed(second, 3), 'rear', 3)
    assert list(compressed.scores) == pytest.approx(list(on_camera.scores))


def test_standing_answers_carry_the_image_header(node, client, reference):
    """Every frame is answered for the every-frame task; answers copy the frame's header."""
    answers = client.collect(Answer, f'{NODE}/answers/red_present')
    yes = client.collect(Bool, f'{NODE}/answers/red_present/yes')
    counts = client.collect(Answer, f'{NODE}/answers/shape_count')
    front = client.camera(Image, FRONT_TOPIC)
    wait_until(lambda: client.node.count_subscribers(f'{NODE}/answers/red_present')
               and front.get_subscription_count(), what='connections')
    time.sleep(0.5)
    images = {100 + i: _scene_image(100 + i) for i in range(12)}
    for stamp, rgb in images.items():
        front.publish(_msg(rgb, stamp, 'front_optical'))
        time.sleep(0.1)
    wait_until(lambda: len(answers) >= 6 and [c for c in counts if c.header.stamp.sec in images],
               what='standing answers')
    ours = [a for a in answers if a.header.stamp.sec in images]
    assert len(ours) >= 6
    for answer in ours:
        assert answer.header.frame_id == 'front_optical' and answer.task == 'red_present'
        expected = reference.answer(images[answer.header.stamp.sec],
                                    ['red_present']).predictions[0]
        assert answer.label == expected.label
        assert list(answer.scores) == pytest.approx(expected.scores)
        assert 0 < answer.latency_ms < 10000
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
    short, long, wrong, empty = (_msg(_scene_image(5), 5) for _ in range(4))
    short.data = bytes(short.data)[:-3]
    long.data = bytes(long.data) + b'\0' * 3
    wrong.encoding = 'yuv422'
    empty.height = 0
    return [
        ({'task': 'no_such_task', 'image': good}, 'unknown task'),
        ({'task': 'red_present', 'camera': 'no_such_camera'}, 'unknown camera'),
        ({'task': 'red_present', 'camera': 'side'}, 'no frame received yet'),
        ({'task': 'red_present', 'camera': 'front', 'max_age': 0.001}, 'old'),
        ({'task': 'red_present', 'image': wrong}, 'unsupported image encoding'),
        ({'task': 'red_present', 'image': short}, 'step x height'),
        ({'task': 'red_present', 'image': long}, 'step x height'),
        ({'task': 'red_present', 'image': empty}, 'empty'),
        ({'task': 'red_present', 'image': _msg(_scene_image(6, size=128), 6)},
         'max_image_pixels'),
    ]


def test_bad_requests_fail_with_advice_and_the_next_is_answered(node, client):
    """Each bad request gets success=false and an error saying what to do; then all is well."""
    good = _msg(_scene_image(3), 3)
    _publish_until_answered(client, client.camera(Image, FRONT_TOPIC), _msg(_scene_image(4), 4),
                            'front', 4)
    time.sleep(0.05)
    for fields, words in _bad_requests(good):
        response = _ask(client, **fields)
        assert not response.success, fields
        assert words in response.error, (fields, response.error)
        assert response.label_index == -1
        assert _ask(client, task='red_present', image=good).success
    assert node.process.poll() is None


def test_sixteen_concurrent_calls_are_all_answered(node, client, reference):
    """16 Ask calls in flight at once, on 8 different images, all get their own answer."""
    images = [_scene_image(200 + i) for i in range(8)]
    clients = [client.node.create_client(Ask, f'{NODE}/ask') for _ in range(16)]
    try:
        for ask_client in clients:
            assert ask_client.wait_for_service(timeout_sec=10.0)
        futures = [ask_client.call_async(Ask.Request(
            task=TASKS[i % 2], image=_msg(images[i % 8], 200 + i)))
            for i, ask_client in enumerate(clients)]
        responses = [client.wait(future, timeout=120.0) for future in futures]
    finally:
        for ask_client in clients:
            client.node.destroy_client(ask_client)
    for i, response in enumerate(responses):
        expected = reference.answer(images[i % 8], [TASKS[i % 2]]).predictions[0]
        assert response.success, response.error
        assert response.image_stamp.sec == 200 + i and response.task == TASKS[i % 2]
        assert list(response.scores) == pytest.approx(expected.scores)


def test_sigint_exits_with_zero_and_leaves_no_shared_memory(node):
    """Ctrl-C stops the active node cleanly: exit code 0, no orphaned /dev/shm/fastdds_* files."""
    assert node.interrupt(timeout=60.0) == 0, node.log()[-3000:]
    time.sleep(0.5)
    assert orphaned_fastdds_files(node.shm_before) == set()
    assert 'Traceback' not in node.log()


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
        assert _set_profiles(client, name, [str(assets['other'])])
        assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)
        status = wait_until(lambda: (s := _status(diagnostics, f'{name}: model'))
                            and 'calibrated on' in s.message and s, what='a mismatch ERROR')
        assert status.level == DiagnosticStatus.ERROR and 'recalibrate' in status.message.lower()
        assert _set_profiles(client, name, [str(assets['profiles'])])
        assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
        assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
        response = client.call(Ask, f'{name}/ask', Ask.Request(
            task='shape_count', image=_msg(_scene_image(9), 9)))
        assert response.success and response.label in {'1', '2', '3', '4'}
        wait_until(lambda: _status(diagnostics, f'{name}: model').level
                   == DiagnosticStatus.OK, what='an OK model status after recovery')
        assert process.interrupt() == 0
    finally:
        process.close()
