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

"""Point the CMake files of the ROS 2 PyPI wheels at this interpreter's include folders.

The ``ros-*`` wheels export CMake targets (``share/*/cmake/*.cmake``) whose include folders are
those of the machine the wheels were built on (``/opt/python/cp311-cp311/...``). Building an
interface package against them fails with ``includes non-existent path`` until the Python and
numpy include folders are rewritten to this interpreter's. Run it with the virtual environment's
own Python after every install or upgrade of the ``ros-*`` wheels; it is idempotent.
"""

import argparse
from pathlib import Path
import re
import sys
import sysconfig

# Python's include folder, e.g. /opt/python/cp311-cp311/include/python3.11
PYTHON_INCLUDE = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
# numpy's include folder, e.g. .../site-packages/numpy/_core/include (numpy/core/include before 2)
NUMPY_INCLUDE = re.compile(
    r'/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include')
FOREIGN_PREFIX = '/opt/python/cp3'


def fix_text(text: str, python_include: str, numpy_include: str) -> str:
    """Return text with the build machine's include folders replaced by the given ones."""
    text = NUMPY_INCLUDE.sub(lambda _: numpy_include, text)
    return PYTHON_INCLUDE.sub(lambda _: python_include, text)


def fix_prefix(prefix: Path, python_include: str, numpy_include: str) -> tuple[int, list[Path]]:
    """Rewrite every CMake file under prefix/share; return (files changed, files still foreign)."""
    changed = 0
    leftover = []
    for path in sorted(prefix.glob('share/*/cmake/*.cmake')):
        text = path.read_text(encoding='utf-8')
        if FOREIGN_PREFIX not in text:
            continue
        fixed = fix_text(text, python_include, numpy_include)
        if fixed != text:
            path.write_text(fixed, encoding='utf-8')
            changed += 1
        if FOREIGN_PREFIX in fixed:
            leftover.append(path)
    return changed, leftover


def main(argv: list[str] | None = None) -> int:
    """Fix the CMake files under the prefix (default: this interpreter's) and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--prefix', type=Path, default=Path(sys.prefix),
                        help='environment holding the ros-* wheels (default: %(default)s)')
    args = parser.parse_args(argv)
    try:
        import numpy
    except ImportError:
        sys.stderr.write('fix_ros_cmake: numpy is not installed in this environment; '
                         'install the requirements first (make setup).\n')
        return 1
    python_include = sysconfig.get_paths()['include']
    numpy_include = numpy.get_include()
    changed, leftover = fix_prefix(args.prefix, python_include, numpy_include)
    sys.stdout.write(f'fix_ros_cmake: {changed} CMake file(s) rewritten to use {python_include} '
                     f'and {numpy_include}\n')
    if leftover:
        names = ', '.join(str(p) for p in leftover)
        sys.stderr.write(f'fix_ros_cmake: foreign paths remain in {names}; a newer ros-* wheel '
                         'may use another layout: extend the patterns in this script.\n')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
