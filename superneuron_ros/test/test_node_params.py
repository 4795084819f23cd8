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

"""Tests of the node's parameter declarations, parsing and runtime validation."""

from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from superneuron_ros.node.params import (CameraSpec, check_standing_tasks,
                                         declaration_problems, declare_node_parameters,
                                         NodeSettings, ParameterError, parse_standing_task,
                                         parse_standing_tasks, read_settings, StandingTask,
                                         topic_token, updated_settings)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_node(rclpy_context):
    """Yield a factory of plain nodes with overrides, in a private rclpy context."""
    context = rclpy_context
    nodes = []

    def make(**overrides) -> Node:
        params = [Parameter(name.replace('__', '.'), value=value)
                  for name, value in overrides.items()]
        node = Node('params_test', context=context, parameter_overrides=params,
                    start_parameter_services=False, enable_rosout=False)
        nodes.append(node)
        declare_node_parameters(node)
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.destroy_node()


def test_defaults_declare_one_raw_camera_and_read_only_model_settings(make_node):
    """Without overrides there is one camera 'camera' and the model settings are read-only."""
    node = make_node()
    settings = read_settings(node)
    assert settings.cameras == (CameraSpec('camera', 'camera/image_raw', 'raw'),)
    assert settings.resolved_default_camera == 'camera'
    assert settings.profiles == () and settings.standing_tasks == ()
    assert settings.autostart is True and settings.quantization == 'nf4'
    for name in ('model_path', 'quantization', 'device', 'dtype', 'cameras', 'camera.topic'):
        descriptor = node.describe_parameter(name)
        assert descriptor.read_only, name
        assert descriptor.description, name
    assert not node.describe_parameter('max_image_age').read_only
    assert node.describe_parameter('max_image_age').floating_point_range[0].to_value == 3600.0
    result = node.set_parameters([Parameter('model_path', value='/elsewhere')])[0]
    assert not result.successful and 'read-only' in result.reason


def test_per_camera_parameters_are_declared_after_the_list(make_node):
    """Each listed camera gets its own topic and transport; compressed changes the default."""
    node = make_node(cameras=['front', 'rear'], front__topic='/cam/front',
                     rear__transport='compressed', default_camera='rear',
                     standing_tasks=['door@front', ' shape@rear:2.5 ', ''],
                     profiles=['/p/a', ''], max_image_age=0.5)
    settings = read_settings(node)
    assert settings.cameras == (CameraSpec('front', '/cam/front', 'raw'),
                                CameraSpec('rear', 'rear/image_raw/compressed', 'compressed'))
    assert settings.resolved_default_camera == 'rear'
    assert settings.standing_tasks == (StandingTask('door', 'front', 0.0),
                                       StandingTask('shape', 'rear', 2.5))
    assert settings.standing_tasks[1].period_s == pytest.approx(0.4)
    assert settings.profiles == ('/p/a',) and settings.max_image_age == 0.5


@pytest.mark.parametrize('overrides,words', [
    ({'cameras': ['front'], 'default_camera': 'rear'}, 'default_camera'),
    ({'cameras': ['front', 'front']}, 'twice'),
    ({'cameras': ['1st']}, 'must start with a letter'),
    ({'cameras': ['front'], 'front__transport': 'h264'}, 'raw or compressed'),
    ({'standing_tasks': ['door@nowhere']}, 'not in cameras'),
    ({'standing_tasks': ['door@camera', 'door@camera:1.0']}, 'more than once'),
])
def test_inconsistent_parameters_are_reported_not_crashing(make_node, overrides, words):
    """Bad combinations raise ParameterError with a reason at read time (configure fails)."""
    node = make_node(**overrides)
    with pytest.raises(ParameterError, match=words):
        read_settings(node)


@pytest.mark.parametrize('entry,expected', [
    ('door@front', StandingTask('door', 'front', 0.0)),
    ('door @ front : 4', StandingTask('door', 'front', 4.0)),
    ('door@front:0.5', StandingTask('door', 'front', 0.5)),
])
def test_standing_task_grammar(entry, expected):
    """TASK@CAMERA and TASK@CAMERA:RATE parse, with spaces allowed."""
    assert parse_standing_task(entry, ['front']) == expected


@pytest.mark.parametrize('entry', ['door', 'door@', '@front', 'door@front:', 'door@front:0',
                                   'door@front:-1', 'door@front:fast', 'door@front:inf',
                                   'a@b@front'])
def test_bad_standing_tasks_are_refused(entry):
    """Missing parts, non-positive or non-numeric rates raise ParameterError."""
    with pytest.raises(ParameterError):
        parse_standing_task(entry, ['front', 'b'])


def test_updated_settings_validates_changes_and_ignores_foreign_parameters():
    """Changes are checked against the cameras; use_sim_time is left to rclpy."""
    settings = NodeSettings(cameras=(CameraSpec('front', 'f'), CameraSpec('rear', 'r')))
    new = updated_settings(settings, [
        Parameter('standing_tasks', value=['a@rear:1.0']), Parameter('max_image_age', value=2.0),
        Parameter('default_camera', value='rear'), Parameter('use_sim_time', value=True)])
    assert new.standing_tasks == (StandingTask('a', 'rear', 1.0),)
    assert new.max_image_age == 2.0 and new.resolved_default_camera == 'rear'
    assert settings.max_image_age == 1.0
    with pytest.raises(ParameterError, match='default_camera'):
        updated_settings(settings, [Parameter('default_camera', value='side')])
    with pytest.raises(ParameterError, match='not in cameras'):
        updated_settings(settings, [Parameter('standing_tasks', value=['a@side'])])
    assert parse_standing_tasks([], ['front']) == ()


def test_load_config_errors_name_the_parameter():
    """An empty model_path or a bad quantization becomes a ParameterError with advice."""
    with pytest.raises(ParameterError, match='model_path is empty'):
        NodeSettings().load_config()
    with pytest.raises(ParameterError, match='quantization'):
        NodeSettings(model_path='/m', quantization='q3').load_config()
    assert NodeSettings(model_path='/m', quantization='none').load_config().device == 'auto'


def test_topic_token_makes_valid_topic_names():
    """Task names map to topic tokens that start with a letter."""
    assert topic_token('door_open') == 'door_open'
    assert topic_token('door-open') == 'door_open'
    assert topic_token('3d') == 't_3d'


def test_shipped_config_file_sets_every_parameter():
    """The shipped config file loads under a namespace and parses into valid settings."""
    config = PACKAGE_ROOT / 'config' / 'superneuron.yaml'
    context = rclpy.Context()
    rclpy.init(context=context, args=['--ros-args', '--params-file', str(config),
                                      '-r', '__ns:=/robot1'])
    try:
        node = Node('superneuron', context=context, start_parameter_services=False,
                    enable_rosout=False)
        try:
            declare_node_parameters(node)
            settings = read_settings(node)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert settings.model_path and settings.profiles and settings.standing_tasks == ()
    assert settings.cameras == (CameraSpec('front', '/camera/image_raw', 'raw'),)
    assert settings.load_config().quantization == 'nf4'


def test_an_integer_for_a_double_is_taken_as_that_double(make_node):
    """max_image_age: 1 in YAML (an int) declares the double 1.0, with no problem reported."""
    node = make_node(max_image_age=1, latency_window=30)
    assert node.get_parameter('max_image_age').type_ == Parameter.Type.DOUBLE
    settings = read_settings(node)
    assert settings.max_image_age == 1.0 and isinstance(settings.max_image_age, float)
    assert settings.latency_window == 30.0 and declaration_problems(node) == []


@pytest.mark.parametrize('overrides,words', [
    ({'max_image_age': 'abc'}, "max_image_age must be a double, but the params file gives 'abc' "
                               '(a string)'),
    ({'max_image_pixels': 1.5}, 'max_image_pixels must be an integer, but the params file gives '
                                '1.5 (a double)'),
    ({'standing_tasks': 'door@camera'}, 'standing_tasks must be a string array'),
    ({'cameras': 'front'}, 'cameras must be a string array'),
    ({'autostart': 'yes'}, 'autostart must be a bool'),
    ({'max_image_age': 5000}, 'max_image_age is 5000 in the params file, outside its range 0 '
                              'to 3600'),
    ({'diagnostics_period': 0.01}, 'diagnostics_period is 0.01 in the params file, outside'),
])
def test_a_wrong_type_keeps_the_default_and_is_reported(make_node, overrides, words):
    """Declaring never raises; read_settings names the parameter, expected and given type."""
    node = make_node(**overrides)  # declare_node_parameters ran without an exception
    name = next(iter(overrides))
    assert node.has_parameter(name)
    with pytest.raises(ParameterError) as raised:
        read_settings(node)
    assert words in str(raised.value) and 'stays unconfigured' in str(raised.value)


def test_a_reported_value_that_is_set_right_stops_being_reported(make_node):
    """Setting a changeable parameter after a bad params-file value clears the report."""
    node = make_node(max_image_age='abc', latency_window='long')
    assert len(declaration_problems(node)) == 2
    node.set_parameters([Parameter('max_image_age', value=2.0)])
    assert declaration_problems(node) == [
        "parameter latency_window must be a double, but the params file gives 'long' (a string)"]
    node.set_parameters([Parameter('latency_window', value=20.0)])
    assert read_settings(node).max_image_age == 2.0


def test_check_standing_tasks_refuses_tasks_no_profile_provides():
    """Configure fails on a standing task whose task is not loaded (see the node docstring)."""
    tasks = (StandingTask('door', 'front'), StandingTask('nope', 'front', 2.0))
    check_standing_tasks(tasks[:1], ['door', 'room'])
    with pytest.raises(ParameterError, match=r"\['nope@front'\] name task\(s\) that no profile"):
        check_standing_tasks(tasks, ['door', 'room'])
