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

SIGINT and SIGTERM are handled here, not by rclpy: the first one stops the node from accepting
calls, refuses what is queued and lets the running answer finish; the executor keeps spinning
until every call received has its response, then the node and the context are shut down, and
the process exits with 0. Further signals during that time change nothing.
"""

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from superneuron_ros.node.launch_args import params_file_problems
from superneuron_ros.node.superneuron_node import SuperneuronNode

# The executor is single-threaded on purpose: every callback is short (image callbacks store a
# reference, ~/ask queues a job and awaits it), inference runs in the node's worker thread, and
# rclpy's MultiThreadedExecutor re-submits awaiting callbacks to its pool on every wake-up (its
# bookkeeping grows with them). Spinning with a timeout lets the main thread see signals.
SPIN_TIMEOUT_S = 0.1
# Longest wait, after a signal, for the running answer and the responses to go out.
DRAIN_TIMEOUT_S = 30.0
# After the last response, calls that were already on their way are still taken for this long.
QUIET_S = 0.5


def _spin_until(executor: SingleThreadedExecutor, until: Callable[[], bool],
                timeout: float | None = None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while not until() and rclpy.ok() and (deadline is None or time.monotonic() < deadline):
        executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)


def main(args: list[str] | None = None, loader: Any = None) -> int:
    """
    Run the node until SIGINT or SIGTERM; return the process exit code (0).

    `loader(load_config, profile_paths)` replaces Runtime.load (the load test's slow stand-in).
    """
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    problems = params_file_problems(sys.argv if args is None else args)  # rcl: a traceback
    if problems:
        sys.stderr.write(''.join(f'superneuron_node: {problem}\n' for problem in problems))
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor()
    node = None
    try:
        node = SuperneuronNode() if loader is None else SuperneuronNode(loader=loader)
        executor.add_node(node)
        _spin_until(executor, stop.is_set)
        node.begin_shutdown()
        _spin_until(executor, lambda: node.drained(QUIET_S), DRAIN_TIMEOUT_S)
        if not node.drained():
            node.get_logger().warning('some calls got no response within '
                                      f'{DRAIN_TIMEOUT_S:g} s of the shutdown signal')
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.release()  # waits for a configure in progress, stops the worker, frees the model
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
