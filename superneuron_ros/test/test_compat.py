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
Per-distribution checks, run on kilted and on jazzy.

The environment is the distribution it claims, and the code keeps to the API that jazzy
(rclpy 7) and kilted (rclpy 9) share, outside node/compat.py.
"""

import os
from pathlib import Path
import re

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from superneuron_ros.node import compat

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_rclpy_is_the_one_of_the_claimed_distribution():
    """The rclpy major version is that of ROS_DISTRO (7 jazzy, 9 kilted), which make test sets."""
    version = compat.rclpy_version()
    assert re.fullmatch(r'\d+\.\d+\.\d+', version), version
    distro = compat.ros_distro()
    assert distro in compat.DISTRIBUTIONS.values()
    claimed = os.environ.get('ROS_DISTRO')
    if claimed is None:
        pytest.skip('ROS_DISTRO is not set (make test sets it)')
    assert distro == claimed, f'rclpy {version} is {distro}, but ROS_DISTRO={claimed}'


def test_parameter_override_reads_params_file_values_before_declaration(rclpy_context):
    """The private accessor works on this distribution's rclpy: value, or None when absent."""
    node = Node('compat_test', context=rclpy_context, enable_rosout=False,
                start_parameter_services=False,
                parameter_overrides=[Parameter('max_image_age', value='abc')])
    try:
        assert compat.parameter_override(node, 'max_image_age') == 'abc'
        assert compat.parameter_override(node, 'latency_window') is None
    finally:
        node.destroy_node()


def test_no_kilted_only_api_outside_the_compat_module():
    """Source, launch file and tests use only API that both distributions have."""
    offenders = []
    files = [p for p in PACKAGE_ROOT.rglob('*.py') if 'build' not in p.parts]
    for path in files:
        if path.name in ('compat.py', 'test_compat.py'):
            continue
        text = path.read_text()
        for pattern, why in compat.KILTED_ONLY.items():
            if re.search(pattern, text):
                offenders.append(f'{path.relative_to(PACKAGE_ROOT)}: {why}')
    assert offenders == [], 'go through superneuron_ros/node/compat.py:\n' + '\n'.join(offenders)
