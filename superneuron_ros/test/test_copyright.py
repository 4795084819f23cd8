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

"""Every Python file of the package starts with the project's Apache-2.0 header."""

from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
HEADER_FILE = PACKAGE_ROOT.parent / 'docs' / 'license_header.txt'
SKIPPED_FOLDERS = {'__pycache__', 'build', 'install', 'log'}


def expected_header() -> str:
    """Return the header text from docs/license_header.txt, or this file's own first lines."""
    if HEADER_FILE.is_file():
        return HEADER_FILE.read_text(encoding='utf-8').rstrip('\n') + '\n'
    # Outside the repository (an installed or copied package): this file carries the header too.
    lines = Path(__file__).read_text(encoding='utf-8').splitlines(keepends=True)
    return ''.join(lines[:13])


def has_header(text: str, header: str) -> bool:
    """Return whether text starts with header, after an optional shebang line."""
    if text.startswith('#!'):
        text = text.split('\n', 1)[1] if '\n' in text else ''
    return text.startswith(header)


def python_files() -> list[Path]:
    """Return every .py file under the package folder, setup.py included, sorted."""
    return sorted(
        path for path in PACKAGE_ROOT.rglob('*.py')
        if not SKIPPED_FOLDERS.intersection(path.relative_to(PACKAGE_ROOT).parts[:-1])
        and not any(part.startswith('.') or part.endswith('.egg-info')
                    for part in path.relative_to(PACKAGE_ROOT).parts[:-1]))


def test_header_check_rejects_other_text():
    """The check accepts the header (after a shebang too) and rejects a changed or late one."""
    header = expected_header()
    assert header.startswith('# Copyright') and 'Apache License, Version 2.0' in header
    assert has_header(header + '"""Doc."""\n', header)
    assert has_header('#!/usr/bin/env python3\n' + header, header)
    assert not has_header(header.replace('2026', '2025'), header)
    assert not has_header('"""Doc."""\n' + header, header)


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    """Every .py file under superneuron_ros/ and setup.py starts with the Apache header."""
    header = expected_header()
    files = python_files()
    assert PACKAGE_ROOT / 'setup.py' in files
    assert Path(__file__).resolve() in files
    missing = [str(path.relative_to(PACKAGE_ROOT)) for path in files
               if not has_header(path.read_text(encoding='utf-8'), header)]
    assert not missing, 'Missing or altered copyright header (docs/license_header.txt): ' + \
        ', '.join(missing)
