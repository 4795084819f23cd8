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

"""superneuron_interfaces: generated types, their fields, and an Ask call between two processes."""

import os
from pathlib import Path
import re
import select
import signal
import subprocess
import sys

from ament_index_python.packages import get_package_share_directory
from builtin_interfaces.msg import Time
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from superneuron_interfaces.msg import Answer
from superneuron_interfaces.msg import LatencyStats
from superneuron_interfaces.msg import TaskInfo
from superneuron_interfaces.srv import Ask
from superneuron_interfaces.srv import ListTasks
from superneuron_interfaces.srv import Record

SERVER = Path(__file__).resolve().parent / 'interfaces_echo_server.py'

# ROS interface types as the generated Python types name them.
IDL_NAMES = {'bool': 'boolean', 'byte': 'octet', 'char': 'uint8', 'float32': 'float',
             'float64': 'double'}
TYPES = {'msg/Answer.msg': [Answer], 'msg/LatencyStats.msg': [LatencyStats],
         'msg/TaskInfo.msg': [TaskInfo], 'srv/Ask.srv': [Ask.Request, Ask.Response],
         'srv/ListTasks.srv': [ListTasks.Request, ListTasks.Response],
         'srv/Record.srv': [Record.Request, Record.Response]}


def idl_type(ros_type: str) -> str:
    """Map a .msg field type (float32, Answer[], std_msgs/Header) to the generated type name."""
    base, array = (ros_type[:-2], True) if ros_type.endswith('[]') else (ros_type, False)
    if '/' not in base and base[:1].isupper():
        base = f'superneuron_interfaces/{base}'
    base = IDL_NAMES.get(base, base)
    return f'sequence<{base}>' if array else base


def declared_fields(text: str) -> list[list[tuple[str, str]]]:
    """Return the (name, generated type) of every field of each part of a .msg/.srv text."""
    parts = [[]]
    for line in text.splitlines():
        code = line.split('#', 1)[0].strip()
        if code == '---':
            parts.append([])
        elif code:
            ros_type, name = code.split()[:2]
            parts[-1].append((name, idl_type(ros_type)))
    return parts


INTERFACE_FILES = ['msg/Answer.msg', 'msg/LatencyStats.msg', 'msg/TaskInfo.msg',
                   'srv/Ask.srv', 'srv/ListTasks.srv', 'srv/Record.srv']
FIELD_LINE = re.compile(r'^[A-Za-z][\w/]*(\[\d*\])?\s+[a-z]\w*(\s*=.*)?$')


@pytest.mark.parametrize('relative', list(TYPES))
def test_generated_types_have_the_installed_definitions_fields(relative):
    """Each generated type has exactly the fields of its installed .msg/.srv file, in order."""
    share = Path(get_package_share_directory('superneuron_interfaces'))
    parts = declared_fields((share / relative).read_text(encoding='utf-8'))
    assert len(parts) == len(TYPES[relative])
    for msg_type, fields in zip(TYPES[relative], parts):
        assert list(msg_type.get_fields_and_field_types().items()) == fields, msg_type


def test_the_contract_the_node_and_clients_rely_on():
    """Ask takes several tasks and returns Answer messages; LatencyStats has mean_layers_run."""
    request = Ask.Request.get_fields_and_field_types()
    response = Ask.Response.get_fields_and_field_types()
    assert request['tasks'] == 'sequence<string>' and request['image'] == 'sensor_msgs/Image'
    assert response['answers'] == 'sequence<superneuron_interfaces/Answer>'
    assert set(response) == {'success', 'error', 'refusal', 'answers'}
    assert LatencyStats.get_fields_and_field_types()['mean_layers_run'] == 'float'
    assert idl_type('float32[]') == 'sequence<float>' and idl_type('TaskInfo') == (
        'superneuron_interfaces/TaskInfo')


def uncommented_fields(text: str) -> list[str]:
    """Return the field lines of a .msg/.srv text that have no comment above or beside them."""
    missing = []
    previous = ''
    for line in text.splitlines():
        stripped = line.strip()
        code = stripped.split('#', 1)[0].strip()
        if FIELD_LINE.match(code) and '#' not in stripped and not previous.startswith('#'):
            missing.append(stripped)
        previous = stripped
    return missing


def test_uncommented_fields_are_found():
    """The comment check flags a bare field and accepts comments above or beside a field."""
    text = '# the name\nstring name\nint32 count  # how many\nfloat32 bare\n---\nbool ok\n'
    assert uncommented_fields(text) == ['float32 bare', 'bool ok']


@pytest.mark.parametrize('relative', INTERFACE_FILES)
def test_every_installed_field_is_commented(relative):
    """The installed .msg/.srv files (found through the ament index) comment every field."""
    share = Path(get_package_share_directory('superneuron_interfaces'))
    text = (share / relative).read_text(encoding='utf-8')
    codes = [line.split('#', 1)[0].strip() for line in text.splitlines()]
    assert any(FIELD_LINE.match(code) for code in codes), f'no field found in {relative}'
    assert uncommented_fields(text) == []


@pytest.fixture(scope='module')
def echo_server(tmp_path_factory):
    """Start interfaces_echo_server.py in its own process; yield its namespace; stop it."""
    namespace = f'/superneuron_test_{os.getpid()}'
    log = tmp_path_factory.mktemp('echo_server') / 'stderr.log'
    with open(log, 'w') as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SERVER), '--namespace', namespace, '--lifetime', '120'],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        readable, _, _ = select.select([process.stdout], [], [], 30)
        ready = process.stdout.readline().strip() if readable else ''
        assert ready == 'ready', f'server did not start within 30 s: {log.read_text()}'
        yield namespace
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client_node(rclpy_context):
    """Yield (node, executor) on this test's own context, destroyed afterwards."""
    node = rclpy.create_node('test_interfaces_client', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()


def call(node, executor, srv_type, name, request):
    """Call a service in another process and return its response (fail after 10 s)."""
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=10), f'service {name} did not appear'
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=10)
    assert future.done(), f'service {name} did not answer within 10 s'
    return future.result()


def test_ask_round_trip_between_processes(echo_server, client_node):
    """An Ask request with two tasks and an image reaches another process; answers come back."""
    node, executor = client_node
    image = Image(height=2, width=3, encoding='rgb8', step=9, data=bytes(range(18)))
    image.header.stamp = Time(sec=12, nanosec=345)
    image.header.frame_id = 'front_optical'
    request = Ask.Request(tasks=['door_open', 'door_open'], camera='front', image=image,
                          max_age=0.5)
    response = call(node, executor, Ask, f'{echo_server}/ask', request)
    assert response.success and response.refusal == ''
    assert response.error == 'front'
    assert len(response.answers) == 2
    for answer in response.answers:
        assert answer.task == 'door_open'
        assert list(answer.labels) == ['no', 'yes']
        assert (answer.label, answer.label_index) == ('yes', 1)
        assert list(answer.scores) == pytest.approx([0.5, 18.0])
        assert answer.confidence == pytest.approx(0.75)
        assert answer.exit_layer == 2
        assert (answer.header.stamp.sec, answer.header.stamp.nanosec) == (12, 345)
        assert answer.header.frame_id == 'front_optical'
        assert answer.latency_ms == pytest.approx(sum(range(18)))


def test_ask_failure_and_list_tasks(echo_server, client_node):
    """A failed Ask carries its reason; ListTasks returns TaskInfo entries with every field."""
    node, executor = client_node
    response = call(node, executor, Ask, f'{echo_server}/ask', Ask.Request(tasks=['nope']))
    assert not response.success and list(response.answers) == []
    assert response.refusal == 'busy'
    assert 'nope' in response.error and 'ListTasks' in response.error
    tasks = call(node, executor, ListTasks, f'{echo_server}/list_tasks',
                 ListTasks.Request()).tasks
    assert [(t.name, t.question, list(t.labels), t.exit_layer, t.num_neurons) for t in tasks] == [
        ('door_open', 'Is the door open?', ['no', 'yes'], 1, 5)]
    assert tasks[0].calibration_accuracy == pytest.approx(0.875)
