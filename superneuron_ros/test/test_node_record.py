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
~/record and the profiles parameter at run time, with the node in its own process.

One node (a tiny nf4 LLaVA loaded to layer 0, one camera) serves the record, refusal and
profile tests; a second one, never configured (recording a request image needs no model), is
stopped with SIGINT while records are being written. A third, in this process, loads to
max_exit_layer with no profile and takes a taught one (the API ~/teach uses).
"""

import json
from pathlib import Path
import threading
import time

import cv2
from node_helpers import active_node, NodeProcess, RosClient, wait_until, write_params
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from superneuron_interfaces.msg import Answer
from superneuron_interfaces.srv import Ask, ListTasks, Record
from superneuron_ros.errors import ProfileError
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench.quick_profiles import bench_tasks, quick_profiles
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import load_labelled_set, TaskSpec
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.superneuron_node import SuperneuronNode
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig

NS = '/sn_record'
NODE = f'{NS}/superneuron'
TOPIC = f'{NS}/front/image_raw'
TASK = 'yellow_present'
QUESTION = 'Is there a yellow shape?'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Build a tiny model with quick nf4 profiles of three tasks at layers 0 and 2."""
    root = tmp_path_factory.mktemp('record')
    model = build_model_folder(root / 'model', 'llava', seed=0)
    engine = Engine(load_model(LoadConfig(str(model), 'nf4', 'cpu', exit_layer=2)))
    folders = quick_profiles(engine, model, 'nf4', {'p': ([0, 2], 3)}, (64, 64), k=3,
                             calibration_images=8, out_dir=root / 'profiles')
    del engine
    names = [task.spec.name for task in bench_tasks(3)]
    (root / 'data').mkdir()
    (root / 'outside').mkdir()
    return {'root': root, 'model': model, 'names': names, 'data': root / 'data',
            'at': {layer: {n: str(folders['p'][layer] / n) for n in names} for layer in (0, 2)}}


@pytest.fixture(scope='module')
def node(setup):
    """Start the node: profile of the first task at layer 0 only, standing on camera front."""
    first = setup['names'][0]
    params = write_params(setup['root'] / 'node.yaml', {
        'model_path': str(setup['model']), 'quantization': 'nf4', 'device': 'cpu',
        'profiles': [setup['at'][0][first]], 'cameras': ['front'],
        'standing_tasks': [f'{first}@front:2.0'], 'data_dir': str(setup['data']),
        'max_image_age': 5.0})
    with active_node(params, setup['root'] / 'node.log', NS) as process:
        yield process


@pytest.fixture
def client():
    """Yield a test client spun by a daemon thread."""
    ros = RosClient('sn_record_client')
    try:
        yield ros
    finally:
        ros.close()


def _rgb(seed: int) -> np.ndarray:
    return scenes.render(scenes.random_scene(np.random.default_rng(seed)), (64, 64))


def _msg(rgb: np.ndarray, stamp: int = 0) -> Image:
    header = Header(frame_id='front_optical')
    header.stamp.sec = stamp
    return rgb_to_image(rgb, header)


def _record(client, name: str = NODE, **fields) -> Record.Response:
    return client.call(Record, f'{name}/record', Record.Request(**fields))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def _no_tmp(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob('*') if p.name.endswith('.tmp'))


def _read_rgb(path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_record_request_images_counts_and_refusals(node, client, setup):
    """Request images are stored losslessly with counts; bad requests write nothing."""
    data = setup['data']
    folder = data / 'datasets' / TASK
    first = _record(client, task=TASK, label='yes', image=_msg(_rgb(1)))
    assert not first.success and 'give its labels' in first.error
    assert not (folder / f'{TASK}.jsonl').exists()
    done = _record(client, task=TASK, label='yes', labels=['yes', 'no'], question=QUESTION,
                   image=_msg(_rgb(1)))
    assert done.success, done.error
    assert (list(done.labels), list(done.counts)) == (['yes', 'no'], [1, 0])
    assert done.dataset == str(folder.resolve()) and Path(done.path).parent == folder / 'images'
    np.testing.assert_array_equal(_read_rgb(done.path), _rgb(1))
    second = _record(client, task=TASK, label='No', image=_msg(_rgb(2)))  # labels now stored
    assert second.success and list(second.counts) == [1, 1]
    (data / 'link').symlink_to(setup['root'] / 'outside')
    broken = _msg(_rgb(3))
    broken.data = bytes(broken.data)[:100]  # shorter than height x step
    refusals = [
        ('not a label', {'label': 'maybe'}),
        ('differ from the labels', {'label': 'yes', 'labels': ['no', 'yes']}),
        ('differs from', {'label': 'yes', 'question': 'Is it yellow?'}),
        ('outside data_dir', {'label': 'yes', 'dataset': str(setup['root'] / 'outside')}),
        ('outside data_dir', {'label': 'yes', 'dataset': '../outside/set'}),
        ('outside data_dir', {'label': 'yes', 'dataset': 'link/set'}),  # a symlink out
        ('not a valid task name', {'label': 'yes', 'task': 'Bad Name'}),
        ('bytes', {'label': 'yes', 'image': broken}),
    ]
    for expected, fields in refusals:
        response = _record(client, **{'task': TASK, 'image': _msg(_rgb(3)), **fields})
        assert not response.success and expected in response.error, response.error
    assert list(_record(client, task=TASK, label='yes', image=_msg(_rgb(4))).counts) == [2, 1]
    assert not any((setup['root'] / 'outside').iterdir())
    task = TaskSpec.from_yaml(folder / 'tasks' / f'{TASK}.yaml')
    assert (task.question, task.labels) == (QUESTION, ('yes', 'no'))
    examples = load_labelled_set(folder / f'{TASK}.jsonl', task)
    assert [e.label for e in examples] == ['yes', 'no', 'yes']
    assert [r['source'] for r in _lines(folder / f'{TASK}.jsonl')] == ['record:request'] * 3
    assert _no_tmp(data) == []


def test_record_from_the_camera(node, client, setup):
    """No frame yet and unknown cameras are refused; then the newest frame is stored."""
    early = _record(client, task='camera_set', label='a', labels=['a', 'b'])
    assert not early.success and 'no frame received yet' in early.error
    unknown = _record(client, task='camera_set', label='a', labels=['a', 'b'], camera='rear')
    assert not unknown.success and 'unknown camera' in unknown.error
    publisher = client.camera(Image, TOPIC)
    frame = _rgb(7)

    def recorded():
        publisher.publish(_msg(frame, 7))
        time.sleep(0.05)
        response = _record(client, task='camera_set', label='b', labels=['a', 'b'],
                           camera='front', dataset='cams')
        return response if response.success else None

    response = wait_until(recorded, what='a record of the camera frame')
    np.testing.assert_array_equal(_read_rgb(response.path), frame)
    assert list(response.counts) == [0, 1]
    [line] = _lines(setup['data'] / 'cams' / 'camera_set.jsonl')
    assert (line['source'], line['stamp_ns']) == ('record:front', 7_000_000_000)
    task_file = (setup['data'] / 'cams' / 'tasks' / 'camera_set.yaml').read_text()
    assert 'question' not in task_file  # none given: calibrate would ask for it, not guess


def _set_strings(client, name: str, values: list[str]):
    value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=values)
    return client.call(SetParameters, f'{NODE}/set_parameters', SetParameters.Request(
        parameters=[ParameterMsg(name=name, value=value)])).results[0]


def _set_profiles(client, paths: list[str]):
    return _set_strings(client, 'profiles', paths)


def _tasks(client) -> list[str]:
    return [t.name for t in client.call(ListTasks, f'{NODE}/list_tasks',
                                        ListTasks.Request()).tasks]


def test_profiles_parameter_adds_and_removes_tasks(node, client, setup):
    """A profile added at run time is listed, answered and made standing; removed, it is gone."""
    first, second, third = setup['names']
    at = setup['at']
    assert _tasks(client) == [first]
    result = _set_profiles(client, [at[0][first], at[0][second]])
    assert result.successful, result.reason
    assert _tasks(client) == [first, second]
    answer = client.call(Ask, f'{NODE}/ask', Ask.Request(tasks=[second], image=_msg(_rgb(5))))
    assert answer.success and answer.answers[0].exit_layer == 0, answer.error
    answers = client.collect(Answer, f'{NODE}/answers/{second}')
    standing = [f'{first}@front:2.0', f'{second}@front:5.0']
    assert _set_strings(client, 'standing_tasks', standing).successful  # a standing task now
    publisher = client.camera(Image, TOPIC)

    def answered():
        publisher.publish(_msg(_rgb(8), 8))
        time.sleep(0.1)
        return answers

    assert wait_until(answered, what=f'a standing answer of {second}')[0].task == second
    refused = _set_profiles(client, [at[0][first]])
    assert not refused.successful and f'{second}@front:5' in refused.reason
    assert _set_strings(client, 'standing_tasks', standing[:1]).successful
    result = _set_profiles(client, [at[0][first]])
    assert result.successful, result.reason
    assert _tasks(client) == [first]
    gone = client.call(Ask, f'{NODE}/ask', Ask.Request(tasks=[second], image=_msg(_rgb(5))))
    assert not gone.success and second in gone.error


def test_deeper_profile_and_standing_task_removal_are_refused(node, client, setup):
    """A layer-2 profile on a node loaded to layer 0, or unloading a standing task: refused."""
    first, _, third = setup['names']
    at = setup['at']
    deep = _set_profiles(client, [at[0][first], at[2][third]])
    assert not deep.successful
    assert 'needs decoder layer 2' in deep.reason and 'max_exit_layer >= 2' in deep.reason
    assert 'reconfigure' in deep.reason
    standing = _set_profiles(client, [at[0][third]])
    assert not standing.successful and f'{first}@front' in standing.reason
    assert _tasks(client) == [first]  # all or nothing: the fitting profile was not added
    params = client.call(SetParameters, f'{NODE}/set_parameters', SetParameters.Request(
        parameters=[ParameterMsg(name='max_exit_layer', value=ParameterValue(
            type=ParameterType.PARAMETER_INTEGER, integer_value=2))])).results[0]
    assert not params.successful and 'read-only' in params.reason


def test_sigint_during_records_leaves_every_file_complete(setup, client):
    """Records stream in; SIGINT stops the node; every PNG decodes, every line parses."""
    root = setup['root']
    data = root / 'sigint_data'
    params = write_params(root / 'sigint.yaml', {
        'autostart': False, 'data_dir': str(data), 'cameras': ['front']})
    process = NodeProcess(params, root / 'sigint.log', namespace='/sn_sigint')
    name = '/sn_sigint/superneuron'
    try:
        client.wait_for_service(Record, f'{name}/record', process=process)
        ok = _record(client, name, task=TASK, label='yes', labels=['yes', 'no'],
                     question=QUESTION, image=_msg(_rgb(0)))
        assert ok.success, ok.error
        successes, stop = [], threading.Event()
        ros_client = client.node.create_client(Record, f'{name}/record')

        def stream():
            seed = 1
            while not stop.is_set():
                future = ros_client.call_async(Record.Request(
                    task=TASK, label='yes' if seed % 2 else 'no', image=_msg(_rgb(seed))))
                done = threading.Event()
                future.add_done_callback(lambda _: done.set())
                if not done.wait(2.0):
                    return  # the node is gone
                if future.result().success:
                    successes.append(future.result().path)
                seed += 1

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        wait_until(lambda: len(successes) >= 20, timeout=60.0, what='20 records')
        assert process.interrupt(timeout=60.0) == 0, process.log()[-3000:]
        stop.set()
        thread.join(10)
    finally:
        process.close()
    folder = data / 'datasets' / TASK
    lines = _lines(folder / f'{TASK}.jsonl')  # every line parses
    assert len(lines) >= len(successes) + 1
    for line in lines:
        assert cv2.imread(str(folder / line['image'])) is not None
    for png in (folder / 'images').iterdir():
        assert cv2.imread(str(png)) is not None, png  # no half-written image either
    assert _no_tmp(data) == []
    examples = load_labelled_set(folder / f'{TASK}.jsonl',
                                 TaskSpec.from_yaml(folder / 'tasks' / f'{TASK}.yaml'))
    assert len(examples) == len(lines)


def test_max_exit_layer_node_takes_a_taught_profile(setup, rclpy_context):
    """max_exit_layer 2, no profiles: configure loads 3 layers; add_taught_profile adds one."""
    first, _, third = setup['names']
    at = setup['at']
    node = SuperneuronNode('sn_taught', context=rclpy_context, namespace='/sn_taught',
                           parameter_overrides=[
                               Parameter('autostart', value=False),
                               Parameter('model_path', value=str(setup['model'])),
                               Parameter('device', value='cpu'),
                               Parameter('max_exit_layer', value=2),
                               Parameter('data_dir', value=str(setup['data']))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.model.run(lambda runtime: runtime.loaded_depth) == 3
        assert node.model.tasks == {} and node.model.report.exit_layer == 2
        fingerprint = node.model.run(lambda runtime: runtime.model_fingerprint(2))
        assert fingerprint == Profile.load(at[2][third]).fingerprint
        node.add_taught_profile(at[2][third])
        assert list(node.model.tasks) == [third] and node.model.report.tasks == (third,)
        assert node.get_parameter('profiles').value == [at[2][third]]
        node.add_taught_profile(at[2][third])  # named already: nothing changes
        assert node.get_parameter('profiles').value == [at[2][third]]
        with pytest.raises(ProfileError, match='defined twice'):
            node.add_taught_profile(at[0][third])
        assert node.get_parameter('profiles').value == [at[2][third]]
        result = node.model.answer(_rgb(3), [third])
        assert result.predictions[0].exit_layer == 2
        node.add_taught_profile(at[0][first])
        assert list(node.model.tasks) == [third, first]
    finally:
        node.release()
        node.destroy_node()
