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

"""flake8 with the ament configuration in setup.cfg over the whole package."""

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


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(monkeypatch):
    """The package, its launch files, tests and setup.py pass flake8."""
    monkeypatch.chdir(PACKAGE_ROOT)  # ament_flake8 walks the working folder for AMENT_IGNORE
    paths = [p for p in ('superneuron_ros', 'launch', 'test', 'setup.py') if Path(p).exists()]
    rc, errors = main_with_errors(argv=['--config', str(PACKAGE_ROOT / 'setup.cfg'), *paths])
    assert rc == 0, 'Found %d code style errors / warnings:\n' % len(errors) + '\n'.join(errors)
