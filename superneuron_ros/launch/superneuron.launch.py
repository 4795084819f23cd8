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
Launch the superneuron node with a params file, a namespace, a camera remap and a log level.

    ros2 launch superneuron_ros superneuron.launch.py params_file:=my.yaml namespace:=robot1 \
        image_topic:=/front_camera/image_raw log_level:=debug

The node configures and activates itself (parameter autostart). The equivalent command line is
``superneuron_node --ros-args -r __ns:=/robot1 --params-file my.yaml
-r /camera/image_raw:=/front_camera/image_raw --log-level debug``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Declare the launch arguments and the node."""
    default_params = PathJoinSubstitution(
        [FindPackageShare('superneuron_ros'), 'config', 'superneuron.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML file with the node parameters (model, profiles, cameras, ...)'),
        DeclareLaunchArgument(
            'namespace', default_value='', description='Namespace of the node and its topics'),
        DeclareLaunchArgument(
            'image_topic', default_value='/camera/image_raw',
            description='Topic that replaces /camera/image_raw, the camera topic of the default '
                        'params file'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Log level: debug, info, warn, error or fatal'),
        Node(
            package='superneuron_ros',
            executable='superneuron_node',
            name='superneuron',
            namespace=LaunchConfiguration('namespace'),
            parameters=[LaunchConfiguration('params_file')],
            remappings=[('/camera/image_raw', LaunchConfiguration('image_topic'))],
            ros_arguments=['--log-level', LaunchConfiguration('log_level')],
            output='screen',
            emulate_tty=True,
        ),
    ])
