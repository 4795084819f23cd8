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
Entry point of the superneuron node: ``superneuron_node --ros-args ...``.

Also runnable as ``python -m superneuron_ros.node.main --ros-args --params-file FILE``.
"""

import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from superneuron_ros.node.launch_args import params_file_problems
from superneuron_ros.node.superneuron_node import SuperneuronNode

# Threads for callbacks: concurrent Ask calls wait on the model lock while image callbacks,
# monitoring and parameter services keep their own threads.
NUM_THREADS = 8


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; return the process exit code."""
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    problems = params_file_problems(sys.argv if args is None else args)  # rcl: a traceback
    if problems:
        sys.stderr.write(''.join(f'superneuron_node: {problem}\n' for problem in problems))
        return 2
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor(num_threads=NUM_THREADS)
    try:
        node = SuperneuronNode()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # waits for running callbacks
        if node is not None:
            node.release()  # stops the standing-task worker, frees the model
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
