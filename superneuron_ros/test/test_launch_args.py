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
Tests of the launch file and of the checks it shares with the node's executable.

`launch` and `launch_ros` have no PyPI wheels, so the launch file is run here against recording
stand-ins of the few classes it uses: what is tested is the file's own logic (which arguments it
declares, that a missing params file stops it, which topic image_topic remaps), not launch.
"""

import importlib.util
from pathlib import Path
import sys
import types

import pytest
from superneuron_ros.node.launch_args import (check_params_file, first_camera_topic,
                                              node_parameters, params_file_problems)
from superneuron_ros.node.params import ParameterError
import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = PACKAGE_ROOT / 'config' / 'superneuron.yaml'


def _write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_check_params_file_accepts_a_params_file_and_explains_the_rest(tmp_path):
    """Missing, a folder, not YAML or not a mapping: ParameterError naming the path."""
    assert check_params_file(str(SHIPPED)) == SHIPPED
    cases = [('', 'params_file is empty'),
             (str(tmp_path / 'nonexistent.yaml'), 'nonexistent.yaml does not exist'),
             (str(tmp_path), 'is not a file'),
             (str(_write(tmp_path / 'bad.yaml', 'a: [1, 2')), 'cannot be read as YAML'),
             (str(_write(tmp_path / 'list.yaml', '- 1\n- 2\n')), 'holds no parameters')]
    for path, words in cases:
        with pytest.raises(ParameterError, match=words):
            check_params_file(path)


def test_params_file_problems_reads_only_ros_arguments(tmp_path):
    """Only --params-file inside --ros-args counts; each missing or broken file is one line."""
    good = str(SHIPPED)
    missing = str(tmp_path / 'gone.yaml')
    broken = str(_write(tmp_path / 'broken.yaml', 'a: [1, 2'))
    assert params_file_problems(['node', '--ros-args', '--params-file', good]) == []
    problems = params_file_problems(['node', '--ros-args', '-r', '__ns:=/a', '--params-file',
                                     missing, '--params-file', good, '--params-file', broken])
    assert len(problems) == 2
    assert 'gone.yaml does not exist' in problems[0]
    assert 'cannot be read as YAML' in problems[1] and '\n' not in problems[0]
    assert params_file_problems(['node', '--params-file', missing]) == []  # not a ROS argument
    assert params_file_problems(['node', '--ros-args', '--', '--params-file', missing]) == []


@pytest.mark.parametrize('key,namespace,applies', [
    ('/**', '', True), ('/**', '/robot1', True), ('superneuron', '', True),
    ('/superneuron', '/robot1', False), ('/robot1/superneuron', '/robot1', True),
    ('/robot1/superneuron', '/robot2', False), ('/**/superneuron', '/a/b', True),
    ('/*/superneuron', '/robot1', True), ('/*/superneuron', '', False),
    ('/robot1/other', '/robot1', False),
])
def test_node_parameters_follow_the_ros_key_rules(key, namespace, applies):
    """A section applies by exact name or by ROS wildcards (* one token, ** any)."""
    content = {key: {'ros__parameters': {'cameras': ['rear'], 'rear': {'topic': '/r'}}}}
    params = node_parameters(content, 'superneuron', namespace)
    assert (params == {'cameras': ['rear'], 'rear.topic': '/r'}) == applies


def test_first_camera_topic_whatever_the_camera_is_named(tmp_path):
    """The first camera's topic, from the file or from the node's defaults; later keys win."""
    assert first_camera_topic(str(SHIPPED)) == '/camera/image_raw'
    named = _write(tmp_path / 'named.yaml', {
        '/**': {'ros__parameters': {'cameras': ['left', 'right'],
                                    'left': {'topic': '/stereo/left/image_raw'}}},
        '/robot1/superneuron': {'ros__parameters': {'left': {'topic': '/r1/left'}}}})
    assert first_camera_topic(str(named)) == '/stereo/left/image_raw'
    assert first_camera_topic(str(named), namespace='robot1') == '/r1/left'
    silent = _write(tmp_path / 'silent.yaml', {'/**': {'ros__parameters': {
        'cameras': ['wrist'], 'wrist': {'transport': 'compressed'}}}})
    assert first_camera_topic(str(silent)) == 'wrist/image_raw/compressed'
    empty = _write(tmp_path / 'empty.yaml', {'/**': {'ros__parameters': {'autostart': False}}})
    assert first_camera_topic(str(empty)) == 'camera/image_raw'
    none = _write(tmp_path / 'none.yaml', {'/**': {'ros__parameters': {'cameras': ['']}}})
    with pytest.raises(ParameterError, match='no camera names'):
        first_camera_topic(str(none))


class _Recorded:
    """A stand-in for a launch class: keeps the arguments it was built with."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context: dict) -> str:
        return context[self.args[0]]


@pytest.fixture
def launch_file(monkeypatch):
    """Import the launch file with recording stand-ins for launch and launch_ros."""
    modules = {
        'launch': {'LaunchDescription': _Recorded},
        'launch.actions': {'DeclareLaunchArgument': _Recorded, 'OpaqueFunction': _Recorded},
        'launch.substitutions': {'LaunchConfiguration': _LaunchConfiguration,
                                 'PathJoinSubstitution': _Recorded},
        'launch_ros': {}, 'launch_ros.actions': {'Node': _Recorded},
        'launch_ros.substitutions': {'FindPackageShare': _Recorded},
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(
        'superneuron_launch', PACKAGE_ROOT / 'launch' / 'superneuron.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(launch_file, **arguments):
    description = launch_file.generate_launch_description()
    actions = description.args[0]
    declared = {a.args[0]: a.kwargs for a in actions if 'default_value' in a.kwargs}
    context = {name: kwargs['default_value'] for name, kwargs in declared.items()}
    context.update(arguments)
    opaque = [a for a in actions if 'function' in a.kwargs]
    assert len(opaque) == 1
    return declared, opaque[0].kwargs['function'](context)


def test_launch_file_declares_its_arguments(launch_file):
    """params_file (the shipped config), namespace, image_topic (empty) and log_level."""
    declared, _ = _run(launch_file, params_file=str(SHIPPED))
    assert list(declared) == ['params_file', 'namespace', 'image_topic', 'log_level']
    default = declared['params_file']['default_value']
    assert default.args[0][1:] == ['config', 'superneuron.yaml']
    assert declared['image_topic']['default_value'] == ''
    assert all(kwargs['description'] for kwargs in declared.values())


def test_launch_file_remaps_the_first_camera_and_passes_the_rest(launch_file, tmp_path):
    """image_topic remaps the first camera's topic, whatever its name; empty: no remap."""
    params = _write(tmp_path / 'robot.yaml', {'/**': {'ros__parameters': {
        'cameras': ['head', 'hand'], 'head': {'topic': '/head_cam/image_raw'}}}})
    _, [node] = _run(launch_file, params_file=str(params), namespace='robot1',
                     image_topic='/my/camera', log_level='debug')
    kwargs = node.kwargs
    assert (kwargs['package'], kwargs['executable'], kwargs['name']) == (
        'superneuron_ros', 'superneuron_node', 'superneuron')
    assert kwargs['namespace'] == 'robot1' and kwargs['parameters'] == [str(params)]
    assert kwargs['remappings'] == [('/head_cam/image_raw', '/my/camera')]
    assert kwargs['ros_arguments'] == ['--log-level', 'debug']
    _, [node] = _run(launch_file, params_file=str(params))
    assert node.kwargs['remappings'] == []


def test_launch_file_stops_on_a_missing_params_file(launch_file, tmp_path):
    """A params_file that does not exist raises at once instead of starting on defaults."""
    with pytest.raises(ParameterError, match='nonexistent.yaml does not exist'):
        _run(launch_file, params_file=str(tmp_path / 'nonexistent.yaml'))
