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

"""Install superneuron_ros: its Python package, launch and config files, and two commands."""

from glob import glob
import os

from setuptools import find_packages
from setuptools import setup

package_name = 'superneuron_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # The embedded demo (model folder and profiles) ships inside the Python package.
    package_data={package_name: ['data/demo_model/*', 'data/demo_profiles/*/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), sorted(glob('launch/*.launch.py'))),
        (os.path.join('share', package_name, 'config'), sorted(glob('config/*.yaml'))),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='The superneuron_ros Authors',
    maintainer_email='superneuron_ros@example.com',
    description='Super Neurons for categorical visual questions on ROS 2: a shallow-exit 4-bit '
                'vision-language model answers from a few calibrated scalar activations.',
    license='Apache-2.0',
    python_requires='>=3.10',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'superneuron = superneuron_ros.cli.main:main',
            'superneuron_node = superneuron_ros.node.main:main',
            'scene_camera = superneuron_ros.lab.demo.camera:main',
        ],
    },
)
