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

"""pep257 docstrings over the whole package: stock ament_pep257 and the pep257 convention."""

import logging
from pathlib import Path

from ament_pep257.main import main
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.linter
@pytest.mark.pep257
@pytest.mark.parametrize('convention', ['ament', 'pep257'])
def test_pep257(convention):
    """
    Docstrings pass ament_pep257 as a robot runs it (ament) and the full pep257 convention.

    The pep257 convention adds D100-D107: every public module, class, function and method has
    a docstring.
    """
    paths = [str(PACKAGE_ROOT / p) for p in ('superneuron_ros', 'launch', 'test', 'setup.py')
             if (PACKAGE_ROOT / p).exists()]
    # ament_pep257 sets pydocstyle's logger to INFO (a line per file); keep only the errors.
    log = logging.getLogger('pydocstyle.utils')
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        rc = main(argv=['--convention', convention, *paths])
    finally:
        log.setLevel(level)
    assert rc == 0, 'Found code style errors / warnings (see the output above)'
