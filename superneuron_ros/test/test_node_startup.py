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
Start-up with a wrong params file: the node stays up and says what is wrong.

A YAML value of the wrong type (the node in its own process, as the launch file starts it), and
standing tasks that no profile provides (in this process, with a scripted runtime).
"""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.srv import GetState
from node_helpers import NodeProcess, RosClient, ScriptedRuntime, wait_until, write_params
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from superneuron_ros.node.superneuron_node import SuperneuronNode


@pytest.fixture
def client():
    """Yield a test client with a context of this test's own."""
    ros = RosClient('sn_startup_client')
    try:
        yield ros
    finally:
        ros.close()


def _status(diagnostics: list, name: str):
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == name:
                return status
    return None


def test_a_string_for_a_double_leaves_the_node_up_with_an_error(tmp_path, client):
    """max_image_age: "abc" -> one clear line, ERROR in /diagnostics, unconfigured, exit 0."""
    params = write_params(tmp_path / 'slip.yaml', {
        'model_path': str(tmp_path / 'model'), 'profiles': [str(tmp_path / 'profiles')],
        'max_image_age': 'abc', 'diagnostics_period': 0.5})
    name = '/sn_slip/superneuron'
    diagnostics = client.collect(DiagnosticArray, '/diagnostics')
    process = NodeProcess(params, tmp_path / 'slip.log', namespace='/sn_slip')
    try:
        status = wait_until(lambda: (s := _status(diagnostics, f'{name}: model'))
                            and s.level == DiagnosticStatus.ERROR and s, timeout=60.0,
                            what='an ERROR model status')
        assert ("max_image_age must be a double, but the params file gives 'abc' (a string)"
                in status.message)
        state = client.call(GetState, f'{name}/get_state', GetState.Request())
        assert state.current_state.label == 'unconfigured'
        assert process.process.poll() is None
        assert process.interrupt() == 0
    finally:
        process.close()
    log = process.log()
    assert 'Traceback' not in log and 'InvalidParameterTypeException' not in log
    assert 'max_image_age must be a double' in log


def test_an_integer_for_a_double_is_accepted(tmp_path, client):
    """max_image_age: 1 in YAML: the node starts and `ros2 param get` says double 1.0."""
    params = write_params(tmp_path / 'int.yaml', {'autostart': False, 'max_image_age': 1})
    name = '/sn_int/superneuron'
    process = NodeProcess(params, tmp_path / 'int.log', namespace='/sn_int')
    try:
        client.wait_for_service(GetParameters, f'{name}/get_parameters', timeout=60.0,
                                process=process)
        values = client.call(GetParameters, f'{name}/get_parameters',
                             GetParameters.Request(names=['max_image_age'])).values
        assert values[0].type == ParameterType.PARAMETER_DOUBLE
        assert values[0].double_value == 1.0
        assert process.interrupt() == 0
    finally:
        process.close()
    assert 'Traceback' not in process.log() and 'ERROR' not in process.log()


def test_standing_tasks_that_no_profile_provides_fail_configure(rclpy_context):
    """The parameter always equals what runs: configure fails, the model is freed, then fixed."""
    runtimes = []

    def loader(config, profiles):
        runtimes.append(ScriptedRuntime())
        return runtimes[-1]

    overrides = [Parameter('autostart', value=False), Parameter('model_path', value='/m'),
                 Parameter('profiles', value=['/p']), Parameter('cameras', value=['front']),
                 Parameter('standing_tasks', value=['door@front', 'nope@front:2.0'])]
    node = SuperneuronNode('sn', loader=loader, context=rclpy_context, namespace='/sn_standing',
                           parameter_overrides=overrides)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert runtimes[0].closed and not node.model.loaded
        report = node.model.report
        assert report.phase == 'failed' and "['nope@front']" in report.error
        assert node.get_parameter('standing_tasks').value == ['door@front', 'nope@front:2.0']
        node.set_parameters([Parameter('standing_tasks', value=['door@front'])])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.model.loaded and not runtimes[1].closed
    finally:
        node.release()
        node.destroy_node()
