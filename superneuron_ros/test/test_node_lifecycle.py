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
Tests of the lifecycle node's transitions, endpoints and parameters, driven over ROS.

The node runs in this process under a SingleThreadedExecutor, as main.py runs it, with a
scripted runtime (no model), so that every transition can be exercised quickly;
test_node_process.py runs the real thing.
"""

import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_helpers import ScriptedRuntime, wait_until
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header
from superneuron_interfaces.msg import Answer, LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks
from superneuron_ros.errors import ModelLoadError
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.superneuron_node import SuperneuronNode

NS, NAME = '/sn_lifecycle', 'sn'
FQN = f'{NS}/{NAME}'


class Harness:
    """The node under test, a client node, and one executor spinning both in a daemon thread."""

    def __init__(self, context, loader) -> None:
        """Create both nodes; the node under test does not autostart."""
        overrides = [Parameter('autostart', value=False), Parameter('model_path', value='/m'),
                     Parameter('profiles', value=['/p']), Parameter('cameras', value=['front']),
                     Parameter('front.topic', value=f'{NS}/front/image_raw'),
                     Parameter('standing_tasks', value=['door@front']),
                     Parameter('diagnostics_period', value=0.2)]
        self.node = SuperneuronNode(NAME, loader=loader, context=context, namespace=NS,
                                    parameter_overrides=overrides)
        self.client = rclpy.create_node('sn_lifecycle_client', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.diagnostics = []
        self.client.create_subscription(DiagnosticArray, '/diagnostics',
                                        self.diagnostics.append, 10)

    def close(self) -> None:
        """Shut the executor down and destroy both nodes."""
        self.executor.shutdown()
        self.thread.join(10)
        self.node.release()
        self.node.destroy_node()
        self.client.destroy_node()

    def call(self, srv_type, name, request, timeout=10.0):
        """Call a service and wait for its response."""
        client = self.client.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=10.0), name
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            assert done.wait(timeout), f'{name} did not answer'
            return future.result()
        finally:
            self.client.destroy_client(client)

    def transition(self, transition_id: int) -> bool:
        """Request a lifecycle transition over the change_state service."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, f'{FQN}/change_state', request).success

    def state(self) -> str:
        """Return the node's lifecycle state label."""
        return self.call(GetState, f'{FQN}/get_state', GetState.Request()).current_state.label

    def set_parameter(self, name: str, value: list[str]):
        """Set a string-array parameter through the parameter service; return the result."""
        msg = ParameterMsg(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value))
        response = self.call(SetParameters, f'{FQN}/set_parameters',
                             SetParameters.Request(parameters=[msg]))
        return response.results[0]

    def status(self, part: str) -> DiagnosticStatus:
        """Return the newest diagnostics status of `part`."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name == f'{FQN}: {part}':
                    return status
        return None


@pytest.fixture
def harness(rclpy_context):
    """Yield a Harness with a scripted runtime; the runtimes it built are in harness.runtimes."""
    runtimes = []

    def loader(config, profiles):
        runtime = ScriptedRuntime()
        runtimes.append(runtime)
        return runtime

    h = Harness(rclpy_context, loader)
    h.runtimes = runtimes
    try:
        yield h
    finally:
        h.close()


def _frame(stamp_sec: int) -> Image:
    header = Header(frame_id='front_optical')
    header.stamp.sec = stamp_sec
    return rgb_to_image(np.full((8, 8, 3), 100, np.uint8), header)


def test_configure_activate_answer_deactivate_cleanup(harness):
    """Endpoints exist only while active; cleanup closes the runtime."""
    h = harness
    assert h.state() == 'unconfigured' and not h.runtimes
    wait_until(lambda: h.status('model'), what='diagnostics while unconfigured')
    assert h.status('model').level == DiagnosticStatus.OK
    response = h.call(Ask, f'{FQN}/ask', Ask.Request(tasks=['door'], image=_frame(1)))
    assert (response.success, response.refusal) == (False, 'inactive')
    assert 'unconfigured' in response.error
    assert h.transition(Transition.TRANSITION_CONFIGURE) and h.state() == 'inactive'
    assert len(h.runtimes) == 1
    assert h.transition(Transition.TRANSITION_ACTIVATE) and h.state() == 'active'

    answers = []
    yes = []
    h.client.create_subscription(Answer, f'{FQN}/answers/door', answers.append, 10)
    h.client.create_subscription(Bool, f'{FQN}/answers/door/yes', yes.append, 10)
    latency = []
    h.client.create_subscription(LatencyStats, f'{FQN}/latency', latency.append, 10)
    camera = h.client.create_publisher(Image, f'{NS}/front/image_raw', qos_profile_sensor_data)
    wait_until(lambda: camera.get_subscription_count() > 0, what='node subscribed to camera')

    def publish_until_answered():
        camera.publish(_frame(stamp_sec=5))
        return answers
    wait_until(publish_until_answered, timeout=15.0, period=0.1, what='a standing answer')
    assert answers[0].header.stamp.sec == 5 and answers[0].header.frame_id == 'front_optical'
    assert answers[0].label == 'yes' and answers[0].task == 'door'
    wait_until(lambda: yes, what='the yes topic')
    assert yes[0].data is True

    response = h.call(Ask, f'{FQN}/ask', Ask.Request(tasks=['room', 'door']))
    assert response.success and [a.label for a in response.answers] == ['kitchen', 'yes']
    assert response.answers[0].header.stamp.sec == 5
    tasks = h.call(ListTasks, f'{FQN}/list_tasks', ListTasks.Request()).tasks
    assert [t.name for t in tasks] == ['door', 'room']
    wait_until(lambda: [m for m in latency if m.task == 'door' and m.answered_frames > 0],
               what='latency stats for the standing task')
    wait_until(lambda: h.status('camera front') and h.status('camera front').message.endswith(
        's old'), what='camera status')

    assert h.transition(Transition.TRANSITION_DEACTIVATE) and h.state() == 'inactive'
    assert not h.runtimes[0].closed
    assert h.client.count_subscribers(f'{NS}/front/image_raw') == 0
    wait_until(lambda: h.client.count_publishers(f'{FQN}/answers/door') == 0,
               what='the answer publisher to go')
    response = h.call(Ask, f'{FQN}/ask', Ask.Request(tasks=['door']))
    assert (response.success, response.refusal) == (False, 'inactive')  # ~/ask stays
    assert 'state inactive' in response.error
    assert h.transition(Transition.TRANSITION_CLEANUP) and h.state() == 'unconfigured'
    assert h.runtimes[0].closed
    # Reconfiguring builds a new runtime; the node works again.
    assert h.transition(Transition.TRANSITION_CONFIGURE)
    assert h.transition(Transition.TRANSITION_ACTIVATE)
    assert len(h.runtimes) == 2
    assert h.call(Ask, f'{FQN}/ask', Ask.Request(tasks=['door'], image=_frame(1))).success


def test_parameters_are_validated_at_runtime(harness):
    """Standing tasks must name loaded tasks and cameras; model settings are read-only."""
    h = harness
    assert h.transition(Transition.TRANSITION_CONFIGURE)
    assert h.transition(Transition.TRANSITION_ACTIVATE)
    result = h.set_parameter('standing_tasks', ['window@front'])
    assert not result.successful and 'not loaded' in result.reason
    result = h.set_parameter('standing_tasks', ['door@rear'])
    assert not result.successful and 'not in cameras' in result.reason
    result = h.set_parameter('standing_tasks', ['door@front:x'])
    assert not result.successful and 'positive number' in result.reason
    result = h.set_parameter('profiles', ['/elsewhere'])  # applied at once now: refused
    assert not result.successful and 'does not exist' in result.reason
    wait_until(lambda: h.client.count_publishers(f'{FQN}/answers/door') == 1,
               what='the door publisher')
    assert h.set_parameter('standing_tasks', ['room@front:5.0']).successful
    assert [t.task for t in h.node.standing] == ['room']
    wait_until(lambda: h.client.count_publishers(f'{FQN}/answers/door') == 0
               and h.client.count_publishers(f'{FQN}/answers/room') == 1,
               what="the removed task's publisher to go and the new one to come")
    readonly = h.call(SetParameters, f'{FQN}/set_parameters', SetParameters.Request(
        parameters=[ParameterMsg(name='model_path', value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value='/x'))])).results[0]
    assert not readonly.successful


def test_failed_configure_keeps_the_node_up_and_reports_error(rclpy_context):
    """A loader error fails configure; diagnostics show ERROR and a retry can succeed."""
    attempts = []

    def loader(config, profiles):
        attempts.append(config.model_path)
        if len(attempts) == 1:
            raise ModelLoadError('model folder /m does not exist; check model_path')
        return ScriptedRuntime()

    h = Harness(rclpy_context, loader)
    try:
        assert not h.transition(Transition.TRANSITION_CONFIGURE)
        assert h.state() == 'unconfigured'
        status = wait_until(lambda: (s := h.status('model')) and s.level == DiagnosticStatus.ERROR
                            and s, what='ERROR diagnostics')
        assert 'does not exist' in status.message
        assert h.transition(Transition.TRANSITION_CONFIGURE) and h.state() == 'inactive'
        wait_until(lambda: h.status('model').level == DiagnosticStatus.OK, what='recovery')
    finally:
        h.close()
