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
Helpers for the node tests: a node in its own process, and a test client with its own context.

The node process is started exactly as launch/superneuron.launch.py starts it:
``python -m superneuron_ros.node.main --ros-args -r __node:=... -r __ns:=... --params-file F
-r FROM:=TO --log-level L``.
"""

from contextlib import contextmanager
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from superneuron_ros.method.classifier import Prediction
from superneuron_ros.runtime.facade import RuntimeResult, TaskInfo
from superneuron_ros.vlm.engine import StageTimes
import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# For clients that have many calls in flight: every client's reader receives the replies to all
# clients of a service and keeps its own, so with the default depth of 10 a burst of replies
# can push a client's own reply out.
DEEP_REPLIES = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
# Services whose requests change nothing, so RosClient.call may send them again.
READ_ONLY = frozenset({'GetParameters', 'ListParameters', 'DescribeParameters', 'GetState',
                       'GetAvailableStates', 'GetAvailableTransitions', 'ListTasks'})
RESEND_S = 10.0

TASKS = {
    'door': TaskInfo('door', 'Is the door open?', ('yes', 'no'), 1, 3, 0.9, 0, '/p/door'),
    'room': TaskInfo('room', 'Which room?', ('kitchen', 'hall', 'lab'), 1, 5, 0.8, None,
                     '/p/room'),
}


class _SelfTest:
    ok = True
    message = 'nf4 matmul ok'


class ScriptedRuntime:
    """Answers label 0 for every task, or raises `fail`; records the images and tasks asked."""

    def __init__(self) -> None:
        """Start with no calls and no failure."""
        self.tasks = TASKS
        self.exit_layer = 1
        self.selftest = _SelfTest()
        self.calls = []
        self.fail = None
        self.closed = False

    def answer(self, image, task_names):
        """Return label 0 for each task (the real Runtime's result type)."""
        if self.fail is not None:
            raise self.fail
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.calls.append((image.shape, tuple(task_names)))
        predictions = tuple(
            Prediction(TASKS[n].labels[0], 0, TASKS[n].labels,
                       (1.0,) + (0.0,) * (len(TASKS[n].labels) - 1), 1.0, 1)
            for n in task_names)
        return RuntimeResult(predictions, StageTimes(1.0, 2.0, 3.0, 0.5), layers_run=2)

    def close(self):
        """Record the release."""
        self.closed = True


@contextmanager
def active_node(params_file: Path, log_path: Path, namespace: str,
                remaps: Sequence[tuple[str, str]] = (), timeout: float = 180.0
                ) -> Iterator['NodeProcess']:
    """Start the node, wait until it is active (its model loaded), yield it, then stop it."""
    from superneuron_interfaces.srv import Ask
    process = NodeProcess(params_file, log_path, namespace=namespace, remaps=remaps)
    try:
        waiter = RosClient('sn_test_waiter')
        try:
            waiter.wait_for_service(Ask, f'{process.name}/ask', timeout=timeout,
                                    process=process)
            wait_until(lambda: 'active:' in process.log(), timeout=timeout, what='activation')
        finally:
            waiter.close()
        yield process
    finally:
        process.close()


def ros_environment() -> dict[str, str]:
    """Return the environment for ROS processes: localhost discovery and a private domain."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
    return {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
            'ROS_DOMAIN_ID': os.environ['ROS_DOMAIN_ID']}


def write_params(path: Path, params: dict[str, Any]) -> Path:
    """Write a ROS params file that applies `params` to any node name and namespace."""
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}, sort_keys=False))
    return path


class NodeProcess:
    """The superneuron node in a child process, with its output in a log file."""

    def __init__(self, params_file: Path, log_path: Path, namespace: str = '/sn_test',
                 name: str = 'superneuron', remaps: Sequence[tuple[str, str]] = (),
                 log_level: str = 'info', executable: str | None = None) -> None:
        """Start the node as the launch file does (`executable`: a program to run instead)."""
        program = [executable] if executable else [sys.executable, '-m',
                                                   'superneuron_ros.node.main']
        command = program + ['--ros-args', '-r', f'__node:={name}', '-r', f'__ns:={namespace}',
                             '--params-file', str(params_file)]
        for source, target in remaps:
            command += ['-r', f'{source}:={target}']
        command += ['--log-level', log_level]
        env = {**os.environ, **ros_environment(), 'PYTHONUNBUFFERED': '1',
               'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
               'PYTHONPATH': os.pathsep.join(
                   [str(PACKAGE_ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])}
        self.name = f'{namespace.rstrip("/")}/{name}'
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, cwd=str(PACKAGE_ROOT))

    def log(self) -> str:
        """Return everything the node printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def interrupt(self, timeout: float = 30.0) -> int:
        """Send SIGINT (Ctrl-C), wait for the exit, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the process if it still runs (SIGINT, then SIGKILL), and close the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # SIGKILL would leave /dev/shm files
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class RosClient:
    """A test node in its own rclpy Context, spun by a daemon thread."""

    def __init__(self, name: str = 'sn_test_client') -> None:
        """Create the context, the node and the spinning thread."""
        ros_environment()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context was shut down under the executor
            pass

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        try:
            self.executor.shutdown()
            self._thread.join(10)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                rclpy.shutdown(context=self.context)

    def wait_for_service(self, srv_type: Any, name: str, timeout: float = 120.0,
                         process: 'NodeProcess | None' = None) -> None:
        """Wait until service `name` is available (the node may still be loading its model)."""
        client = self.node.create_client(srv_type, name)
        try:
            deadline = time.monotonic() + timeout
            while not client.wait_for_service(timeout_sec=1.0):
                if process is not None and process.process.poll() is not None:
                    raise AssertionError(f'the node exited with {process.process.returncode}:\n'
                                         f'{process.log()[-3000:]}')
                if time.monotonic() > deadline:
                    log = process.log()[-3000:] if process is not None else ''
                    raise AssertionError(f'service {name} not available after {timeout} s\n'
                                         f'{log}')
        finally:
            self.node.destroy_client(client)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """
        Call a service (waiting up to 10 s for it) and return the response.

        A read-only request (READ_ONLY) is sent again every RESEND_S seconds until `timeout`:
        a client created just before its call can miss the response when the server has not yet
        matched the client's response reader (seen with Jazzy's Fast DDS once the node offers
        many endpoints); sending a request that changes something twice would not be safe.
        """
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=10.0), f'service {name} not available'
            if srv_type.__name__ not in READ_ONLY:
                return self.wait(client.call_async(request), timeout)
            deadline = time.monotonic() + timeout
            while True:
                future = client.call_async(request)
                try:
                    return self.wait(future, min(RESEND_S, max(0.1, deadline - time.monotonic())))
                except AssertionError:
                    client.remove_pending_request(future)
                    if time.monotonic() >= deadline:
                        raise
        finally:
            self.node.destroy_client(client)

    @staticmethod
    def wait(future: Any, timeout: float = 60.0) -> Any:
        """Wait for an rclpy future and return its result."""
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), 'no response in time'
        return future.result()

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> list:
        """Subscribe to `topic` and return the list that received messages are appended to."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def camera(self, msg_type: Any, topic: str) -> Any:
        """Return a publisher with the sensor-data QoS a camera driver uses."""
        return self.node.create_publisher(msg_type, topic, qos_profile_sensor_data)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, period: float = 0.05,
               what: str = 'condition') -> Any:
    """Poll `predicate` until it returns a true value; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def _shm_names(pid: str | int) -> set[str]:
    """Return the /dev/shm files that process `pid` maps or holds open."""
    used = set()
    try:
        with open(f'/proc/{pid}/maps') as maps:
            used.update(line.rsplit('/dev/shm/', 1)[1].strip().split(' ')[0]
                        for line in maps if '/dev/shm/' in line)
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError:  # the process ended, or is not ours to read
        return used
    for fd in fds:
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:  # closed meanwhile
            continue
        if target.startswith('/dev/shm/'):
            used.add(target[len('/dev/shm/'):])
    return used


def fastdds_files_of(pid: int) -> set[str]:
    """
    Return the Fast DDS shared-memory files of process `pid`: those it maps or holds open.

    Fast DDS names its files by a random segment id or by port, not by process, so a process's
    files are found through /proc/<pid>; each file's lock (``_el``, ``_sl``) and port mutex
    (``sem.<name>_mutex``) companions are included.
    """
    # Fast DDS 3 (Kilted) names them fastdds_*, Fast DDS 2 (Jazzy) fastrtps_*.
    # The port files (fastdds_port<N>, sem.fastdds_port<N>_mutex) belong to the port, which every
    # participant of the domain shares, not to the node: only its own segments are counted.
    prefixes = ('fastdds_', 'fastrtps_')
    ports = tuple(f'{prefix}port' for prefix in prefixes)
    names = {name for name in _shm_names(pid)
             if name.startswith(prefixes) and not name.startswith(ports)}
    stems = {name.removesuffix('_el').removesuffix('_sl') for name in names}
    return names | {f'{stem}{suffix}' for stem in stems for suffix in ('', '_el', '_sl')}


def files_in_use() -> set[str]:
    """Return the /dev/shm files that some live process maps or holds open."""
    used = set()
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            used |= _shm_names(pid)
    return used


def orphaned(names: set[str]) -> set[str]:
    """Those of `names` that still exist in /dev/shm although no live process uses them."""
    existing = {name for name in names if os.path.exists(f'/dev/shm/{name}')}
    if not existing:
        return set()
    in_use = files_in_use()
    return {name for name in existing if name.removesuffix('_el').removesuffix('_sl')
            not in {n.removesuffix('_el').removesuffix('_sl') for n in in_use}
            and not (name.startswith('sem.') and name[4:].removesuffix('_mutex') in in_use)}
