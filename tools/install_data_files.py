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

"""Link the ``data_files`` of an ament_python package's setup.py into an install prefix.

An editable ``pip install -e`` installs the Python package and its console scripts but not the
``data_files`` (the ament index marker, package.xml, launch and config files), so that
``ament_index_python.get_package_share_directory()`` would not find the package. This links each
of them into the prefix, like ``colcon build --symlink-install``: edits to a launch or config file
are seen at once; a new file needs another run (``make setup`` does it).
"""

import argparse
import os
from pathlib import Path
import runpy
import sys
from unittest import mock


def read_data_files(setup_py: Path) -> list[tuple[str, list[str]]]:
    """Run setup.py with setuptools.setup replaced, and return the data_files it passes."""
    captured = {}
    cwd = os.getcwd()
    os.chdir(setup_py.parent)  # setup.py globs paths relative to its own folder
    try:
        with mock.patch('setuptools.setup', lambda **kwargs: captured.update(kwargs)):
            runpy.run_path(str(setup_py), run_name='__main__')
    finally:
        os.chdir(cwd)
    return [(str(target), list(sources)) for target, sources in captured.get('data_files', [])]


def link_data_files(setup_py: Path, prefix: Path) -> list[Path]:
    """Link every data file of setup_py into prefix; return the links made."""
    links = []
    for target, sources in read_data_files(setup_py):
        folder = prefix / target
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            source_path = (setup_py.parent / source).resolve()
            if not source_path.is_file():
                raise FileNotFoundError(f'{setup_py} lists {source}, which is not a file')
            link = folder / source_path.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(source_path)
            links.append(link)
    return links


def main(argv: list[str] | None = None) -> int:
    """Link the data files of the given setup.py into the prefix and report how many."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('setup_py', type=Path, help="the package's setup.py")
    parser.add_argument('--prefix', type=Path, default=Path(sys.prefix),
                        help='install prefix (default: %(default)s)')
    args = parser.parse_args(argv)
    links = link_data_files(args.setup_py.resolve(), args.prefix)
    sys.stdout.write(f'install_data_files: {len(links)} file(s) linked into {args.prefix}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
