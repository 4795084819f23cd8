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

The node configures and activates itself (parameter autostart). A params_file that does not
exist (or is not YAML) stops the launch at once with a message saying so. image_topic remaps the
topic of the first camera in the params file, whatever that camera is named. The equivalent
command line is ``superneuron_node --ros-args -r __node:=superneuron -r __ns:=/robot1
--params-file my.yaml -r <first camera's topic>:=/front_camera/image_raw --log-level debug``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare
from superneuron_ros.node.launch_args import check_params_file, first_camera_topic

NODE_NAME = 'superneuron'


def _node(context, *args, **kwargs) -> list:
    """Check the params file, resolve the remap of the first camera and return the node."""
    params_file = LaunchConfiguration('params_file').perform(context)
    namespace = LaunchConfiguration('namespace').perform(context)
    image_topic = LaunchConfiguration('image_topic').perform(context)
    check_params_file(params_file)  # raises ParameterError: launch prints it and exits 1
    remappings = []
    if image_topic:
        remappings.append((first_camera_topic(params_file, NODE_NAME, namespace), image_topic))
    return [Node(
        package='superneuron_ros',
        executable='superneuron_node',
        name=NODE_NAME,
        namespace=namespace,
        parameters=[params_file],
        remappings=remappings,
        ros_arguments=['--log-level', LaunchConfiguration('log_level').perform(context)],
        output='screen',
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    """Declare the launch arguments and the node."""
    default_params = PathJoinSubstitution(
        [FindPackageShare('superneuron_ros'), 'config', 'superneuron.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=default_params,
            description='YAML file with the node parameters (model, profiles, cameras, ...); '
                        'the launch stops at once if it does not exist'),
        DeclareLaunchArgument(
            'namespace', default_value='', description='Namespace of the node and its topics'),
        DeclareLaunchArgument(
            'image_topic', default_value='',
            description='Topic to read the first camera of the params file from (remaps that '
                        "camera's topic, whatever the camera is named); empty: no remap"),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Log level: debug, info, warn, error or fatal'),
        OpaqueFunction(function=_node),
    ])
