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
The one place where the node's code differs between ROS 2 distributions.

Tested on jazzy (rclpy 7) and kilted (rclpy 9) from wheels (``make test ROS_DISTRO=jazzy``).
Everything else in ``node/`` uses only API that both have. Kilted-only API (``with
rclpy.init()``, ``rclpy.timer.TimerInfo`` timer callbacks, ``Executor.create_future``,
``Context.track_node``, ``qos_profile_rosout_default``) must not be used outside this module;
``test/test_compat.py`` checks that, and :data:`KILTED_ONLY` lists it.
"""

from functools import lru_cache
import importlib.metadata
import os
from pathlib import Path
import re
from typing import Any

# rclpy major version -> distribution.
DISTRIBUTIONS = {3: 'humble', 7: 'jazzy', 9: 'kilted'}
# Source patterns of API that kilted's rclpy has and jazzy's lacks.
KILTED_ONLY = {
    r'with\s+rclpy\.init\(': 'rclpy.init() is a context manager only in kilted',
    r'\bTimerInfo\b': 'timer callbacks with a TimerInfo argument are kilted only',
    r'\.create_future\(': 'Executor.create_future is kilted only',
    r'\.(un)?track_node\(': 'Context.track_node is kilted only',
    r'\bqos_profile_rosout_default\b': 'rclpy.qos_profile_rosout_default is kilted only',
    r'\bTimerCancelledError\b': 'rclpy.executors.TimerCancelledError is kilted only',
}


@lru_cache(maxsize=1)
def rclpy_version() -> str:
    """Return the version of the rclpy in use ('' if unknown): wheel metadata, else package.xml."""
    try:
        return importlib.metadata.version('ros-rclpy')
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # a ROS 2 install: the version is in rclpy's package.xml
        from ament_index_python.packages import get_package_share_directory
        text = (Path(get_package_share_directory('rclpy')) / 'package.xml').read_text()
    except Exception:  # no ament index: version unknown
        return ''
    match = re.search(r'<version>\s*([\d.]+)\s*</version>', text)
    return match.group(1) if match else ''


def ros_distro() -> str:
    """Return the ROS 2 distribution: from rclpy's version, else $ROS_DISTRO, else 'unknown'."""
    version = rclpy_version()
    if version:
        distro = DISTRIBUTIONS.get(int(version.split('.')[0]))
        if distro:
            return distro
    return os.environ.get('ROS_DISTRO') or 'unknown'


def parameter_override(node: Any, name: str) -> Any:
    """
    Return the value that --params-file or -p gives a parameter not declared yet (None if none).

    rclpy has no public accessor for it; the private ``_parameter_overrides`` dict is the same in
    rclpy 7 and 9 (checked by test/test_compat.py on both).
    """
    param = getattr(node, '_parameter_overrides', {}).get(name)
    return None if param is None else param.value
