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

"""Install what an editable install of an ament_python package leaves out: data files, lib/.

An editable ``pip install -e`` installs the Python package and its console scripts in ``bin/``, but
not the ``data_files`` (the ament index marker, package.xml, launch and config files), so that
``ament_index_python.get_package_share_directory()`` would not find the package, and it ignores
setup.cfg's ``script_dir``, so that ``lib/<package>/``, where ``ros2 run``, ``ros2 pkg
executables`` and ``ros2 launch`` look for executables, does not exist. This links each data file
into the prefix, like ``colcon build --symlink-install`` (edits to a launch or config file are seen
at once; a new file needs another run, which ``make setup`` does), and writes one script per
``console_scripts`` entry point into ``<prefix>/lib/<package>/``, as a colcon build does.
"""

import argparse
import os
from pathlib import Path
import re
import runpy
import sys
from unittest import mock


# A console script as setuptools writes it for an entry point 'name = module:function'.
SCRIPT = """#!{python}
# {name} = {module}:{function} (written by tools/install_data_files.py)
import sys

from {module} import {function}

if __name__ == '__main__':
    sys.exit({function}())
"""
ENTRY_POINT = re.compile(r'\s*([\w.-]+)\s*=\s*([\w.]+)\s*:\s*(\w+)\s*\Z')


def read_setup(setup_py: Path) -> dict:
    """Run setup.py with setuptools.setup replaced, and return the keyword arguments it passes."""
    captured = {}
    cwd = os.getcwd()
    os.chdir(setup_py.parent)  # setup.py globs paths relative to its own folder
    try:
        with mock.patch('setuptools.setup', lambda **kwargs: captured.update(kwargs)):
            runpy.run_path(str(setup_py), run_name='__main__')
    finally:
        os.chdir(cwd)
    return captured


def read_data_files(setup_py: Path) -> list[tuple[str, list[str]]]:
    """Return the data_files that setup.py passes to setuptools.setup."""
    return [(str(target), list(sources))
            for target, sources in read_setup(setup_py).get('data_files', [])]


def read_console_scripts(setup_py: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """Return the package name and its console scripts as (name, module, function)."""
    captured = read_setup(setup_py)
    scripts = []
    for entry in captured.get('entry_points', {}).get('console_scripts', []):
        match = ENTRY_POINT.match(entry)
        if not match:
            raise ValueError(f'{setup_py}: console script {entry!r} is not "name = module:func"')
        scripts.append(match.groups())
    return captured['name'], scripts


def write_lib_scripts(setup_py: Path, prefix: Path, python: str) -> list[Path]:
    """Write each console script into prefix/lib/<package>/, run by `python`; return them."""
    package, scripts = read_console_scripts(setup_py)
    folder = prefix / 'lib' / package
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module, function in scripts:
        path = folder / name
        if path.is_symlink():
            path.unlink()
        path.write_text(SCRIPT.format(python=python, name=name, module=module,
                                      function=function))
        path.chmod(0o755)
        written.append(path)
    return written


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
    """Link the data files and write the lib/ scripts of the given setup.py; report them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('setup_py', type=Path, help="the package's setup.py")
    parser.add_argument('--prefix', type=Path, default=Path(sys.prefix),
                        help='install prefix (default: %(default)s)')
    parser.add_argument('--python', default=None,
                        help='interpreter of the lib/ scripts (default: <prefix>/bin/python)')
    args = parser.parse_args(argv)
    setup_py, prefix = args.setup_py.resolve(), Path(os.path.abspath(args.prefix))
    links = link_data_files(setup_py, prefix)
    python = args.python or str(prefix / 'bin' / 'python')
    scripts = write_lib_scripts(setup_py, prefix, python)
    sys.stdout.write(f'install_data_files: {len(links)} file(s) linked into {prefix}, '
                     f'{len(scripts)} executable(s) in {scripts[0].parent if scripts else "-"}'
                     '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
