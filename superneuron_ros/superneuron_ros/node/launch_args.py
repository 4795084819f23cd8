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
Checks of what the launch file and the command line are given, before the node starts.

Pure Python (no ROS import), so that the launch file, the executable and the tests share it:

- :func:`check_params_file`: a params file that does not exist stops the launch at once with a
  clear message (launch_ros itself only warns and starts the node on defaults);
- :func:`params_file_problems`: the same for ``--params-file`` on the node's command line (rcl
  would fail with a traceback);
- :func:`first_camera_topic`: the topic of the first camera a params file gives the node, which
  the launch argument ``image_topic`` remaps, whatever that camera is named.
"""

import fnmatch
from pathlib import Path
from typing import Any, Sequence

from superneuron_ros.node.params import ParameterError
import yaml


def check_params_file(path: str) -> Path:
    """Return `path` as a Path if it is a readable YAML params file; else raise ParameterError."""
    if not path:
        raise ParameterError('params_file is empty; give the path of a YAML params file '
                             '(share/superneuron_ros/config/superneuron.yaml is the template)')
    file = Path(path).expanduser()
    if not file.exists():
        raise ParameterError(f'params_file {path} does not exist; give the path of a YAML '
                             'params file (share/superneuron_ros/config/superneuron.yaml is '
                             'the template)')
    if not file.is_file():
        raise ParameterError(f'params_file {path} is not a file; give a YAML params file')
    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParameterError(f'params_file {path} cannot be read as YAML: {exc}') from exc
    if not isinstance(content, dict):
        raise ParameterError(f'params_file {path} holds no parameters: expected a mapping of '
                             'node names to "ros__parameters" (see the shipped '
                             'config/superneuron.yaml)')
    return file


def params_file_problems(argv: Sequence[str]) -> list[str]:
    """
    Return what is wrong with each ``--params-file`` of a ROS command line (empty: nothing).

    A file that is missing or not YAML makes rcl fail with a traceback; this says it in a line.
    """
    problems = []
    in_ros_args = False
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == '--ros-args':
            in_ros_args = True
        elif arg == '--':
            in_ros_args = False
        elif in_ros_args and arg == '--params-file' and i + 1 < len(args):
            try:
                check_params_file(args[i + 1])
            except ParameterError as exc:
                problems.append(str(exc))
    return problems


def _matches(key: str, node_fqn: str) -> bool:
    """Whether a params-file key (``/**``, ``name``, ``/ns/name``, wildcards) names the node."""
    key = key if key.startswith('/') else '/' + key
    if key == node_fqn:
        return True
    # '**' matches any number of namespace levels, '*' one token (ROS 2 parameter wildcards).
    pattern = key.replace('/**', '\0').replace('*', '[!/]*').replace('\0', '*')
    return fnmatch.fnmatchcase(node_fqn, pattern)


def node_parameters(content: Any, node_name: str, namespace: str = '') -> dict:
    """Merge the ``ros__parameters`` that a params file's content gives one node (later wins)."""
    namespace = '/' + namespace.strip('/') if namespace.strip('/') else ''
    fqn = f'{namespace}/{node_name}'
    merged: dict = {}
    for key, section in (content or {}).items():
        if not isinstance(section, dict) or not _matches(str(key), fqn):
            continue
        params = section.get('ros__parameters')
        if isinstance(params, dict):
            merged.update(_flatten(params))
    return merged


def _flatten(params: dict, prefix: str = '') -> dict:
    flat = {}
    for name, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{name}.'))
        else:
            flat[f'{prefix}{name}'] = value
    return flat


def first_camera_topic(params_file: str, node_name: str = 'superneuron',
                       namespace: str = '') -> str:
    """
    Return the topic of the first camera that `params_file` configures for the node.

    Uses the node's defaults where the file is silent: cameras ``[camera]``, topic
    ``<camera>/image_raw`` (``.../compressed`` for the compressed transport).
    """
    params = node_parameters(yaml.safe_load(check_params_file(params_file).read_text()),
                             node_name, namespace)
    cameras = [c for c in params.get('cameras', ['camera']) or [] if str(c).strip()]
    if not isinstance(params.get('cameras', []), list) or not cameras:
        raise ParameterError(f'params_file {params_file} gives no camera names in "cameras", '
                             'so image_topic has no camera to remap')
    first = str(cameras[0])
    transport = params.get(f'{first}.transport', 'raw')
    default = f'{first}/image_raw' + ('/compressed' if transport == 'compressed' else '')
    return str(params.get(f'{first}.topic', default))
