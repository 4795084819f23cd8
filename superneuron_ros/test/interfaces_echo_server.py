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
Serve Ask and ListTasks with answers computed from each request, for test_interfaces.py.

Run as a separate process: ``python interfaces_echo_server.py --namespace /ns --lifetime 60``.
It prints ``ready`` once both services exist, and exits on SIGINT, SIGTERM or after lifetime
seconds, so that a test that dies cannot leave it running.
"""

import argparse
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.executors import SingleThreadedExecutor
from superneuron_interfaces.msg import Answer
from superneuron_interfaces.msg import TaskInfo
from superneuron_interfaces.srv import Ask
from superneuron_interfaces.srv import ListTasks

# The one task this server knows; any other name is answered with success=False.
TASK = TaskInfo(name='door_open', question='Is the door open?', labels=['no', 'yes'],
                exit_layer=1, num_neurons=5, calibration_accuracy=0.875)


def answer(request: Ask.Request, response: Ask.Response) -> Ask.Response:
    """Fill the response from the request so that the client can check every field travelled."""
    unknown = [task for task in request.tasks if task != TASK.name]
    if unknown:
        response.success = False
        response.refusal = 'busy'  # any value: it proves the field travels
        response.error = f'unknown task(s) {unknown}: call ListTasks for the loaded tasks'
        return response
    image = request.image
    response.success = True
    response.error = request.camera  # echoed so that the client can check the camera string
    for task in request.tasks:
        label_index = 1 if len(image.data) else 0  # 'yes' when an image came along
        response.answers.append(Answer(
            header=image.header, task=task, label=TASK.labels[label_index],
            label_index=label_index, labels=list(TASK.labels),
            scores=[float(request.max_age), float(len(image.data))], confidence=0.75,
            exit_layer=image.height,
            latency_ms=float(sum(image.data))))  # proves the pixel bytes arrived intact
    return response


def list_tasks(request: ListTasks.Request, response: ListTasks.Response) -> ListTasks.Response:
    """Return the one known task."""
    response.tasks = [TASK]
    return response


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted or until the lifetime has passed."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--namespace', default='/superneuron_test')
    parser.add_argument('--lifetime', type=float, default=60.0)
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node('interfaces_echo_server', namespace=args.namespace)
    node.create_service(Ask, 'ask', answer)
    node.create_service(ListTasks, 'list_tasks', list_tasks)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    deadline = time.monotonic() + args.lifetime
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
