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
The node under load, in its own process: 30 Hz intake, refusals, bounded input cost, shutdown.

Figures (frame rates, latencies, memory over minutes) come from ``superneuron loadtest``; these
tests check the behaviours: frames are taken while the model runs, every call gets a response,
and bad images are refused before they cost memory.
"""

import signal
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import (active_node, DEEP_REPLIES, NodeProcess, wait_until,
                          write_params)
from node_process_fixtures import image_msg, scene_image
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from superneuron_interfaces.srv import Ask
from test_image_conversion import bomb_jpeg

pytest_plugins = ['node_process_fixtures']

NS = '/sn_load'
NODE = f'{NS}/superneuron'


def _params(assets, name: str, **extra):
    return write_params(assets['root'] / f'{name}.yaml', {
        'model_path': str(assets['model']), 'quantization': 'nf4', 'device': 'cpu',
        'profiles': [str(assets['profiles'])], 'cameras': ['front', 'rear'],
        'front': {'topic': f'{NS}/front'},
        'rear': {'topic': f'{NS}/rear', 'transport': 'compressed'},
        'standing_tasks': ['red_present@front'], 'max_image_age': 2.0,
        'diagnostics_period': 0.2, **extra})


@pytest.fixture(scope='module')
def node(assets):
    """Start the node under test, active, with a standing task on every front frame."""
    with active_node(_params(assets, 'load'), assets['root'] / 'load.log', NS) as process:
        yield process


def _peak_rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise AssertionError('no VmHWM in /proc status')


def _set_int(client, name: str, value: int) -> bool:
    msg = ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                                       integer_value=value))
    response = client.call(SetParameters, f'{NODE}/set_parameters',
                           SetParameters.Request(parameters=[msg]))
    return response.results[0].successful


def _frames_received(diagnostics: list, camera: str) -> int:
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == f'{NODE}: camera {camera}':
                values = {kv.key: kv.value for kv in status.values}
                return int(values.get('frames received', 0))
    return 0


def test_30hz_camera_is_taken_while_the_model_runs(node, client):
    """320x240 at 30 Hz with a standing task on every frame and Ask at 5 Hz: no frame is lost."""
    diagnostics = client.collect(DiagnosticArray, '/diagnostics')
    reference = client.collect(Image, f'{NS}/front', qos_profile_sensor_data)
    camera = client.camera(Image, f'{NS}/front')
    wait_until(lambda: camera.get_subscription_count() >= 2 and diagnostics, what='connections')
    time.sleep(0.5)
    before, reference_before = _frames_received(diagnostics, 'front'), len(reference)
    images = [image_msg(scene_image(i, size=64).repeat(5, 0).repeat(4, 1)[:240, :320], i)
              for i in range(30)]
    answered, stop = [], threading.Event()

    def ask():
        while not stop.is_set():
            answered.append(client.call(Ask, f'{NODE}/ask', Ask.Request(
                tasks=['red_present'], camera='front')).success)
            time.sleep(0.2)
    asker = threading.Thread(target=ask, daemon=True)
    start = time.monotonic()
    for i in range(120):  # 4 s at 30 Hz
        camera.publish(images[i % 30])
        if i == 10:
            asker.start()  # once the node has frames
        time.sleep(max(0.0, start + (i + 1) / 30 - time.monotonic()))
    stop.set()
    asker.join(30)
    time.sleep(1.0)  # the next diagnostics carry the final count
    node_frames = _frames_received(diagnostics, 'front') - before
    plain_frames = len(reference) - reference_before
    assert plain_frames >= 60, f'the plain subscriber itself got only {plain_frames} frames'
    # The landed node took about a fifth of the frames here (issue 12); now all of them.
    assert node_frames >= 0.8 * plain_frames, (node_frames, plain_frames)
    assert answered and all(answered)


def test_full_queue_refuses_as_busy_and_every_call_gets_a_response(node, client, reference):
    """With max_queue 1, 24 calls at once: each is answered correctly or refused as busy."""
    assert _set_int(client, 'max_queue', 1)
    images = [scene_image(300 + i) for i in range(4)]
    clients = [client.node.create_client(Ask, f'{NODE}/ask', qos_profile=DEEP_REPLIES)
               for _ in range(24)]
    try:
        for ask_client in clients:
            assert ask_client.wait_for_service(timeout_sec=10.0)
        time.sleep(1.0)  # let the node match each client's reply reader
        futures = [c.call_async(Ask.Request(tasks=['red_present'],
                                            image=image_msg(images[i % 4], 300 + i)))
                   for i, c in enumerate(clients)]
        responses = [client.wait(future, timeout=60.0) for future in futures]
    finally:
        for ask_client in clients:
            client.node.destroy_client(ask_client)
        assert _set_int(client, 'max_queue', 64)
    refusals = [r.refusal for r in responses if not r.success]
    assert refusals and set(refusals) == {'busy'}
    assert all('max_queue' in r.error for r in responses if not r.success)
    for i, response in enumerate(responses):
        if response.success:
            expected = reference.answer(images[i % 4], ['red_present']).predictions[0]
            assert list(response.answers[0].scores) == pytest.approx(expected.scores)


def test_bomb_jpeg_and_thin_image_are_refused_without_a_memory_jump(node, client):
    """A 629-byte JPEG claiming 20000x20000 and a 1x65536 image cost the node no memory."""
    pid = node.process.pid
    rear = client.camera(CompressedImage, f'{NS}/rear')
    wait_until(lambda: rear.get_subscription_count(), what='rear subscription')
    peak = _peak_rss_mb(pid)
    bomb = CompressedImage(format='jpeg', data=bomb_jpeg())

    def refused_on_rear():
        rear.publish(bomb)
        time.sleep(0.1)
        response = client.call(Ask, f'{NODE}/ask', Ask.Request(tasks=['red_present'],
                                                               camera='rear'))
        return response if 'no frame received yet' not in response.error else None
    response = wait_until(refused_on_rear, timeout=20.0, what='the bomb frame')
    assert not response.success and '20000x20000' in response.error
    assert 'max_image_pixels' in response.error
    thin = image_msg(np.zeros((1, 65536, 3), np.uint8), 5)
    response = client.call(Ask, f'{NODE}/ask', Ask.Request(tasks=['red_present'], image=thin))
    assert not response.success and 'max_aspect_ratio' in response.error
    assert _peak_rss_mb(pid) - peak < 50, 'peak memory grew'
    good = client.call(Ask, f'{NODE}/ask', Ask.Request(tasks=['red_present'],
                                                       image=image_msg(scene_image(1), 1)))
    assert good.success


def test_sigint_during_a_burst_gives_every_call_a_response(node, client):
    """40 calls in flight, then SIGINT twice: each call is answered or refused; exit code 0."""
    images = [image_msg(scene_image(400 + i), 400 + i) for i in range(4)]
    ask_clients = [client.node.create_client(Ask, f'{NODE}/ask', qos_profile=DEEP_REPLIES)
                   for _ in range(4)]
    for ask_client in ask_clients:  # one call each first: the reply path is matched too
        assert ask_client.wait_for_service(timeout_sec=10.0)
        assert client.wait(ask_client.call_async(Ask.Request(tasks=['red_present'],
                                                             image=images[0]))).success
    futures = [ask_clients[i % 4].call_async(Ask.Request(tasks=['red_present'],
                                                         image=images[i % 4]))
               for i in range(40)]
    time.sleep(0.05)
    node.process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    node.process.send_signal(signal.SIGINT)
    responses = [client.wait(future, timeout=60.0) for future in futures]
    assert node.process.wait(60) == 0
    assert all(r.success or r.refusal == 'shutting down' for r in responses)
    assert any(r.refusal == 'shutting down' for r in responses)
    log = node.log()
    assert 'Traceback' not in log and 'Failed to complete transition' not in log


@pytest.mark.parametrize('signals', [(signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM,
                                                         signal.SIGINT)])
def test_signals_during_configure_exit_cleanly(assets, signals, tmp_path):
    """Any number of SIGINT/SIGTERM while the model loads: exit 0, no traceback."""
    process = NodeProcess(_params(assets, 'configure'), tmp_path / 'configure.log',
                          namespace='/sn_configure')
    try:
        wait_until(lambda: 'configuring' in process.log(), timeout=60.0, what='configure')
        for signum in signals:
            process.process.send_signal(signum)
            time.sleep(0.02)
        assert process.process.wait(60) == 0
        log = process.log()
        assert 'Traceback' not in log and 'Failed to complete transition' not in log
        assert 'active:' not in log  # activate is skipped once a signal came
    finally:
        process.close()
