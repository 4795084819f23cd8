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
Test environment: the package on sys.path, ROS traffic kept local, model hubs never called.

Runs before any test module is imported, so the variables below are in place before rclpy or
transformers read them. Variables already set (by ``make test`` or colcon) are kept.
"""

import os
from pathlib import Path
import random
import sys
import tempfile

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # superneuron_ros/ (package.xml, setup.py)

if str(PACKAGE_ROOT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_ROOT))

# Fast DDS discovery stays on this machine; a random domain keeps parallel runs apart.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
# Never reach for a model hub: every model in the tests is built or shipped locally.
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'
# The models in the tests are tiny: one thread per process is much faster than two fighting
# over 2 cores with a node process running beside the test (set before torch is imported).
os.environ.setdefault('OMP_NUM_THREADS', '1')
# ament_index_python finds this package's and superneuron_interfaces's share folders in the venv.
os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)
# Weights hashes of the tests' throw-away models are cached per run, not in ~/.cache.
os.environ.setdefault('SUPERNEURON_CACHE', tempfile.mkdtemp(prefix='superneuron-test-cache-'))


@pytest.fixture
def rclpy_context():
    """Yield an initialised rclpy Context of this test's own, shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
