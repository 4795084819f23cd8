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

"""flake8 over the whole package: stock ament_flake8, then the stricter setup.cfg configuration."""

from importlib import metadata
from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Without these plugins setup.cfg's quote, import-order and docstring options check nothing.
PLUGINS = ['flake8-builtins', 'flake8-comprehensions', 'flake8-docstrings',
           'flake8-import-order', 'flake8-quotes']


@pytest.mark.parametrize('plugin', PLUGINS)
def test_flake8_plugin_installed(plugin):
    """Each flake8 plugin the configuration relies on is installed."""
    try:
        metadata.version(plugin)
    except metadata.PackageNotFoundError:
        pytest.fail(f'{plugin} is missing: run make setup (or pip install {plugin})')


PATHS = ('superneuron_ros', 'launch', 'test', 'setup.py')


@pytest.mark.flake8
@pytest.mark.linter
@pytest.mark.parametrize('config', ['ament default', 'setup.cfg'])
def test_flake8(monkeypatch, config):
    """
    The package, its launch files, tests and setup.py pass flake8.

    'ament default' is ament_flake8 exactly as `colcon test` runs it on a robot (its own
    configuration file); 'setup.cfg' adds single quotes and docstrings on every public item.
    """
    monkeypatch.chdir(PACKAGE_ROOT)  # ament_flake8 walks the working folder for AMENT_IGNORE
    paths = [p for p in PATHS if Path(p).exists()]
    argv = paths if config == 'ament default' else ['--config', 'setup.cfg', *paths]
    rc, errors = main_with_errors(argv=argv)
    assert rc == 0, 'Found %d code style errors / warnings:\n' % len(errors) + '\n'.join(errors)
