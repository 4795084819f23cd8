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

SERVER = Path(__file__).resolve().parent / 'interfaces_echo_server.py'

ANSWER_FIELDS = {
    'task': 'string',
    'label': 'string',
    'label_index': 'int32',
    'labels': 'sequence<string>',
    'scores': 'sequence<float>',
    'confidence': 'float',
    'exit_layer': 'int32',
}

EXPECTED_FIELDS = {
    Ask.Request: {
        'task': 'string',
        'camera': 'string',
        'image': 'sensor_msgs/Image',
        'max_age': 'float',
    },
    Ask.Response: {
        'success': 'boolean',
        'error': 'string',
        **ANSWER_FIELDS,
        'image_stamp': 'builtin_interfaces/Time',
        'latency_ms': 'float',
    },
    Answer: {
        'header': 'std_msgs/Header',
        **ANSWER_FIELDS,
        'latency_ms': 'float',
    },
    LatencyStats: {
        'header': 'std_msgs/Header',
        'node': 'string',
        'task': 'string',
        'camera': 'string',
        'preprocess_ms': 'float',
        'vision_ms': 'float',
        'decoder_ms': 'float',
        'classify_ms': 'float',
        'total_ms': 'float',
        'p50_ms': 'float',
        'p95_ms': 'float',
        'answers_per_second': 'float',
        'dropped_frames': 'uint64',
        'answered_frames': 'uint64',
    },
    TaskInfo: {
        'name': 'string',
        'question': 'string',
        'labels': 'sequence<string>',
        'exit_layer': 'int32',
        'num_neurons': 'int32',
        'calibration_accuracy': 'float',
    },
    ListTasks.Request: {},
    ListTasks.Response: {'tasks': 'sequence<superneuron_interfaces/TaskInfo>'},
}

INTERFACE_FILES = ['msg/Answer.msg', 'msg/LatencyStats.msg', 'msg/TaskInfo.msg',
                   'srv/Ask.srv', 'srv/ListTasks.srv']
FIELD_LINE = re.compile(r'^[A-Za-z][\w/]*(\[\d*\])?\s+[a-z]\w*(\s*=.*)?$')


@pytest.mark.parametrize('msg_type', list(EXPECTED_FIELDS), ids=lambda t: t.__name__)
def test_fields_and_types(msg_type):
    """Each generated type has exactly the documented fields, in order, with their types."""
    fields = msg_type.get_fields_and_field_types()
    assert list(fields.items()) == list(EXPECTED_FIELDS[msg_type].items())


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
    """An Ask request with an image reaches another process and its answer comes back whole."""
    node, executor = client_node
    image = Image(height=2, width=3, encoding='rgb8', step=9, data=bytes(range(18)))
    image.header.stamp = Time(sec=12, nanosec=345)
    request = Ask.Request(task='door_open', camera='front', image=image, max_age=0.5)
    response = call(node, executor, Ask, f'{echo_server}/ask', request)
    assert response.success
    assert response.task == 'door_open'
    assert response.error == 'front'
    assert list(response.labels) == ['no', 'yes']
    assert (response.label, response.label_index) == ('yes', 1)
    assert list(response.scores) == pytest.approx([0.5, 18.0])
    assert response.confidence == pytest.approx(0.75)
    assert response.exit_layer == 2
    assert (response.image_stamp.sec, response.image_stamp.nanosec) == (12, 345)
    assert response.latency_ms == pytest.approx(sum(range(18)))


def test_ask_failure_and_list_tasks(echo_server, client_node):
    """A failed Ask carries its reason; ListTasks returns TaskInfo entries with every field."""
    node, executor = client_node
    response = call(node, executor, Ask, f'{echo_server}/ask', Ask.Request(task='nope'))
    assert not response.success
    assert response.label_index == -1
    assert 'nope' in response.error and 'ListTasks' in response.error
    tasks = call(node, executor, ListTasks, f'{echo_server}/list_tasks',
                 ListTasks.Request()).tasks
    assert [(t.name, t.question, list(t.labels), t.exit_layer, t.num_neurons) for t in tasks] == [
        ('door_open', 'Is the door open?', ['no', 'yes'], 1, 5)]
    assert tasks[0].calibration_accuracy == pytest.approx(0.875)
