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
The architecture as the folders show it, enforced.

The robot side (``vlm``, ``method``, ``runtime``, ``node`` and the shared ``errors`` / ``jsonio``
modules) never imports the offline lab or the CLI; below the node nothing imports ROS; the node
starts without torch, which is imported only when configure loads the model.
"""

import ast
import os
from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'superneuron_ros'
ROS_MODULES = ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
               'builtin_interfaces', 'lifecycle_msgs', 'superneuron_interfaces')
BELOW_NODE = ('errors.py', 'jsonio.py', 'vlm', 'method', 'runtime')
ROBOT = BELOW_NODE + ('node',)


def _modules(parts):
    for part in parts:
        path = PACKAGE / part
        yield from ([path] if path.is_file() else sorted(path.rglob('*.py')))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _offending(parts, forbidden) -> list[str]:
    return [f'{path.relative_to(PACKAGE)} imports {name}'
            for path in _modules(parts) for name in sorted(_imports(path))
            if any(name == f or name.startswith(f + '.') for f in forbidden)]


def test_robot_side_never_imports_the_lab_or_the_cli():
    """No module on the robot side imports superneuron_ros.lab or superneuron_ros.cli."""
    assert list(_modules(ROBOT)), 'the robot-side folders are missing'
    assert _offending(ROBOT, ('superneuron_ros.lab', 'superneuron_ros.cli')) == []


def test_below_the_node_nothing_imports_ros():
    """vlm, method, runtime and the shared modules import no rclpy and no message package."""
    assert _offending(BELOW_NODE, ROS_MODULES) == []


def test_the_checker_sees_lazy_imports(tmp_path):
    """The static check finds an import hidden inside a function (so it can fail)."""
    sample = tmp_path / 'sample.py'
    sample.write_text('def f():\n    from superneuron_ros.lab import scenes\n    return scenes\n')
    assert 'superneuron_ros.lab' in _imports(sample)


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize('package', ['vlm', 'method', 'runtime'])
def test_robot_packages_import_with_ros_and_the_lab_blocked(package):
    """Every module below the node imports with ROS and the lab made unimportable."""
    blocked = ROS_MODULES + ('superneuron_ros.lab', 'superneuron_ros.cli')
    result = _run(
        'import importlib, pkgutil, sys\n'
        f'for name in {blocked!r}:\n'
        '    sys.modules[name] = None\n'
        f'import superneuron_ros.{package} as package\n'
        f'for info in pkgutil.walk_packages(package.__path__, "superneuron_ros.{package}."):\n'
        '    importlib.import_module(info.name)\n'
        'print("ok")\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('ok')


def test_node_starts_without_torch():
    """Importing the node (and building its parameters) does not import torch or transformers."""
    result = _run(
        'import sys, time\n'
        'sys.modules["superneuron_ros.lab"] = None\n'
        'start = time.perf_counter()\n'
        'import superneuron_ros.node.main\n'
        'print("import_s", time.perf_counter() - start)\n'
        'print("heavy", sorted(m for m in ("torch", "transformers", "bitsandbytes")'
        ' if m in sys.modules))\n')
    assert result.returncode == 0, result.stderr
    assert 'heavy []' in result.stdout, result.stdout
