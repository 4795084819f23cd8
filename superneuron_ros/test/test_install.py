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
The package as ROS sees it after `make setup` or `colcon build`: executables and dependencies.

`ros2 run` and `ros2 launch` look for executables in ``<prefix>/lib/superneuron_ros/`` (the
prefix that the ament index gives the package); each console script of setup.py must be there
and start. package.xml must name every runtime dependency the code imports, and nothing unused.
"""

import ast
import importlib.util
import os
from pathlib import Path
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree

from ament_index_python.packages import get_package_prefix
from lifecycle_msgs.srv import GetState
from node_helpers import (fastdds_files_of, NodeProcess, orphaned, ros_environment,
                          RosClient, wait_until, write_params)
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _console_scripts() -> list[tuple[str, str, str]]:
    package, scripts = _tool('install_data_files').read_console_scripts(
        PACKAGE_ROOT / 'setup.py')
    assert package == 'superneuron_ros'
    return scripts


def _lib() -> Path:
    return Path(get_package_prefix('superneuron_ros')) / 'lib' / 'superneuron_ros'


def _env() -> dict[str, str]:
    return {**os.environ, **ros_environment(), 'PYTHONUNBUFFERED': '1', 'HF_HUB_OFFLINE': '1',
            'PYTHONPATH': os.pathsep.join(
                [str(PACKAGE_ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])}


def test_every_console_script_is_an_executable_in_lib():
    """lib/superneuron_ros holds exactly the console scripts, executable, run by a real Python."""
    scripts = _console_scripts()
    names = {name for name, _, _ in scripts}
    assert {'superneuron', 'superneuron_node', 'scene_camera'} <= names
    lib = _lib()
    assert lib.is_dir(), f'{lib} is missing: run make setup (or colcon build)'
    executables = {p.name for p in lib.iterdir() if p.is_file() and os.access(p, os.X_OK)}
    assert executables == names  # what `ros2 pkg executables superneuron_ros` lists
    for name, module, function in scripts:
        text = (lib / name).read_text()
        interpreter = text.splitlines()[0].removeprefix('#!').split()[0]
        assert os.access(interpreter, os.X_OK), (name, interpreter)
        assert module in text and function in text


def test_install_data_files_writes_lib_scripts_into_any_prefix(tmp_path):
    """tools/install_data_files.py: one script per entry point, replacing stale links."""
    tool = _tool('install_data_files')
    lib = tmp_path / 'lib' / 'superneuron_ros'
    lib.mkdir(parents=True)
    (lib / 'superneuron_node').symlink_to(tmp_path / 'gone')  # a stale link from a former setup
    written = tool.write_lib_scripts(PACKAGE_ROOT / 'setup.py', tmp_path, sys.executable)
    assert sorted(p.name for p in written) == sorted(n for n, _, _ in _console_scripts())
    node = lib / 'superneuron_node'
    assert not node.is_symlink() and os.access(node, os.X_OK)
    lines = node.read_text().splitlines()
    assert lines[0] == f'#!{sys.executable}'
    assert 'from superneuron_ros.node.main import main' in lines


def test_launch_file_starts_an_executable_that_is_installed():
    """The launch file's Node names an executable of lib/ and the installed share files exist."""
    launch = PACKAGE_ROOT / 'launch' / 'superneuron.launch.py'
    nodes = [call for call in ast.walk(ast.parse(launch.read_text()))
             if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'Node']
    keywords = {k.arg: k.value.value for k in nodes[0].keywords
                if isinstance(k.value, ast.Constant)}
    assert keywords['package'] == 'superneuron_ros'
    assert (_lib() / keywords['executable']).is_file()
    share = Path(get_package_prefix('superneuron_ros')) / 'share' / 'superneuron_ros'
    for relative in ('package.xml', 'launch/superneuron.launch.py', 'config/superneuron.yaml'):
        assert (share / relative).is_file(), relative


def test_superneuron_command_from_lib_prints_its_help():
    """`ros2 run superneuron_ros superneuron --help` runs the CLI."""
    result = subprocess.run([str(_lib() / 'superneuron'), '--help'], capture_output=True,
                            text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'calibrate' in result.stdout and 'demo' in result.stdout


def test_node_executable_starts_and_stops_on_ctrl_c(tmp_path):
    """superneuron_node from lib/ comes up (lifecycle services answer) and exits 0 on SIGINT."""
    params = write_params(tmp_path / 'idle.yaml', {'autostart': False})
    node = NodeProcess(params, tmp_path / 'node.log', namespace='/sn_install',
                       executable=str(_lib() / 'superneuron_node'))
    client = RosClient('sn_install_client')
    try:
        client.wait_for_service(GetState, '/sn_install/superneuron/get_state', timeout=60.0,
                                process=node)
        state = client.call(GetState, '/sn_install/superneuron/get_state', GetState.Request())
        assert state.current_state.label == 'unconfigured'
        owned = fastdds_files_of(node.process.pid)
        assert owned, 'the node maps no Fast DDS shared-memory file: nothing would be checked'
        assert node.interrupt() == 0, node.log()
    finally:
        client.close()
        node.close()
    assert 'Traceback' not in node.log()
    time.sleep(0.5)
    assert orphaned(owned) == set()


def test_node_executable_refuses_a_missing_params_file(tmp_path):
    """A --params-file that does not exist: one clear line and exit code 2, no traceback."""
    result = subprocess.run(
        [str(_lib() / 'superneuron_node'), '--ros-args', '--params-file',
         str(tmp_path / 'nonexistent.yaml')], capture_output=True, text=True, env=_env(),
        timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith('superneuron_node: params_file ')
    assert 'nonexistent.yaml does not exist' in result.stderr and result.stderr.count('\n') == 1
    assert 'Traceback' not in result.stderr + result.stdout


def test_scene_camera_executable_publishes_frames(tmp_path):
    """scene_camera from lib/ publishes rgb8 frames on <camera>/image_raw and exits 0."""
    params = write_params(tmp_path / 'camera.yaml', {'rate': 5.0, 'size': 32})
    camera = NodeProcess(params, tmp_path / 'camera.log', namespace='/sn_install_cam',
                         name='scene_camera', executable=str(_lib() / 'scene_camera'))
    client = RosClient('sn_install_viewer')
    try:
        frames = client.collect(Image, '/sn_install_cam/front/image_raw', qos_profile_sensor_data)
        wait_until(lambda: frames, timeout=60.0, what='a frame from scene_camera')
        assert (frames[0].width, frames[0].height, frames[0].encoding) == (32, 32, 'rgb8')
        assert camera.interrupt() == 0, camera.log()
    finally:
        client.close()
        camera.close()
    assert 'Traceback' not in camera.log()


# Python modules imported by the package -> the rosdep key in package.xml that provides them.
ROSDEP_KEYS = {
    'rclpy': 'rclpy', 'builtin_interfaces': 'builtin_interfaces', 'std_msgs': 'std_msgs',
    'sensor_msgs': 'sensor_msgs', 'diagnostic_msgs': 'diagnostic_msgs',
    'rcl_interfaces': 'rcl_interfaces', 'superneuron_interfaces': 'superneuron_interfaces',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'numpy': 'python3-numpy',
    'yaml': 'python3-yaml', 'cv2': 'python3-opencv', 'PIL': 'python3-pil',
    'tqdm': 'python3-tqdm', 'rich': 'python3-rich', 'matplotlib': 'python3-matplotlib',
    'psutil': 'python3-psutil', 'ament_index_python': 'ament_index_python',
}
# Modules that come from pip (requirements.txt), as package.xml says: no ROS distribution has them.
PIP_MODULES = {'torch': 'torch', 'transformers': 'transformers', 'tokenizers': 'transformers',
               'bitsandbytes': 'bitsandbytes', 'accelerate': 'accelerate',
               'safetensors': 'safetensors', 'num2words': 'num2words', 'torchao': 'torchao',
               'rosbags': 'rosbags'}
# Declared without an import of their own: what the code uses through them.
USED_INDIRECTLY = {
    'lifecycle_msgs': 'rclpy.lifecycle serves the lifecycle services of the node with these types',
}


def _imported_modules() -> set[str]:
    modules = set()
    files = list((PACKAGE_ROOT / 'superneuron_ros').rglob('*.py'))
    files += list((PACKAGE_ROOT / 'launch').glob('*.py'))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split('.')[0])
    return modules - set(sys.stdlib_module_names) - {'superneuron_ros'}


def test_package_xml_declares_what_the_code_imports_and_nothing_unused():
    """Every imported module has its rosdep key (or a pip requirement); every key is used."""
    root = ElementTree.parse(PACKAGE_ROOT / 'package.xml').getroot()
    exec_depends = {e.text.strip() for e in root.iter('exec_depend')}
    imported = _imported_modules()
    unknown = imported - set(ROSDEP_KEYS) - set(PIP_MODULES)
    assert not unknown, f'add the rosdep key of {sorted(unknown)} to package.xml and here'
    missing = {ROSDEP_KEYS[m] for m in imported if m in ROSDEP_KEYS} - exec_depends
    assert not missing, f'package.xml lacks <exec_depend> {sorted(missing)}'
    used = {ROSDEP_KEYS[m] for m in imported if m in ROSDEP_KEYS} | set(USED_INDIRECTLY)
    assert exec_depends - used == set(), 'declared but never used'
    requirements = (REPO_ROOT / 'requirements.txt').read_text()
    for module, requirement in PIP_MODULES.items():
        if module in imported:
            assert f'\n{requirement}' in requirements, requirement


@pytest.mark.parametrize('distro,requirements', [
    ('kilted', 'requirements-ros.txt'), ('jazzy', 'requirements-ros-jazzy.txt')])
def test_each_distribution_installs_every_ros_dependency(distro, requirements):
    """Both wheel sets provide each ROS package in package.xml that has a wheel."""
    text = (REPO_ROOT / 'tools' / requirements).read_text()
    prefix = 'ros-' if distro == 'kilted' else 'ros-jazzy-'
    root = ElementTree.parse(PACKAGE_ROOT / 'package.xml').getroot()
    for key in (e.text.strip() for e in root.iter('exec_depend')):
        if key.startswith('python3-') or key in ('launch', 'launch_ros',
                                                 'superneuron_interfaces'):
            continue  # pip packages, not on PyPI, or built by make setup
        wheel = prefix + key.replace('_', '-')
        assert f'\n{wheel}==' in text, f'{requirements} lacks {wheel}'
