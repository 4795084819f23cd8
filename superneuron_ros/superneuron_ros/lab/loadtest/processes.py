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
Processes of the load test: the node, helper roles, and /proc measurements of the node.

Every process gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the same ``ROS_DOMAIN_ID``
(random unless set), so a load test never leaves this machine or meets another run. With
:func:`use_large_shm`, every process also gets a Fast DDS profile whose shared-memory segment
holds a whole frame: with the default 512 KB segment, a 640x480 rgb8 frame (900 KB) goes over
UDP fragments, and best-effort frames are lost on a loaded machine (measured: 0 of 20 at 5 Hz),
for the plain subscriber as much as for the node.
"""

import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
import yaml

NAMESPACE = '/loadtest'
NODE = f'{NAMESPACE}/superneuron'
TICKS = os.sysconf('SC_CLK_TCK')


SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>shm_large</transport_id>
      <type>SHM</type>
      <segment_size>{segment}</segment_size>
    </transport_descriptor>
    <transport_descriptor>
      <transport_id>udp</transport_id>
      <type>UDPv4</type>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="superneuron_loadtest" is_default_profile="true">
    <rtps>
      <userTransports>
        <transport_id>shm_large</transport_id>
        <transport_id>udp</transport_id>
      </userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def use_large_shm(folder: Path, megabytes: int) -> Path:
    """Write a Fast DDS profile with a `megabytes` SHM segment; every process started uses it."""
    path = folder / 'fastdds_profile.xml'
    path.write_text(SHM_PROFILE.format(segment=megabytes * 1024 * 1024))
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(path)
    return path


def ros_environment() -> dict[str, str]:
    """Return os.environ with localhost discovery and this run's private domain."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
    return {**os.environ, 'PYTHONUNBUFFERED': '1', 'HF_HUB_OFFLINE': '1',
            'TRANSFORMERS_OFFLINE': '1'}


class Process:
    """A child process with its output in a log file."""

    def __init__(self, command: list[str], log: Path) -> None:
        """Start `command`, writing stdout and stderr to `log`."""
        self.log_path = log
        self._log = open(log, 'wb')
        # Run beside the log, outside any checkout: in the repository root the ROS package folder
        # `superneuron_ros/` would shadow the Python package of the same name (as in the demo).
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=ros_environment(), cwd=log.parent)

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def log(self) -> str:
        """Return everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def signal(self, signum: int = signal.SIGINT) -> None:
        """Send `signum` if the process still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """Wait for the exit; return the exit code, or None if it still runs."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, then SIGKILL after `timeout`; return the exit code."""
        self.signal(signal.SIGINT)
        code = self.wait(timeout)
        if code is None:
            self.process.kill()
            code = self.process.wait(10)
        self._log.close()
        return code


def start_node(folder: Path, params: dict, name: str = 'node',
               role: str = '') -> Process:
    """Start the superneuron node (or the stand-in role) with `params` in NAMESPACE."""
    params_file = folder / f'{name}.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
    module = ['superneuron_ros.lab.loadtest.roles', role] if role else [
        'superneuron_ros.node.main']
    return Process([sys.executable, '-m', *module, '--ros-args', '-r', '__node:=superneuron',
                    '-r', f'__ns:={NAMESPACE}', '--params-file', str(params_file)],
                   folder / f'{name}.log')


def start_role(folder: Path, role: str, name: str, *options: str) -> tuple[Process, Path]:
    """Start a helper role writing its JSON result to <folder>/<name>.json."""
    out = folder / f'{name}.json'
    return Process([sys.executable, '-m', 'superneuron_ros.lab.loadtest.roles', role,
                    '--out', str(out), *options], folder / f'{name}.log'), out


def read_result(process: Process, out: Path, timeout: float) -> dict:
    """Wait for a role to finish and return its JSON result."""
    code = process.wait(timeout)
    if code is None:
        process.stop()
    if not out.exists():
        raise RuntimeError(f'{out.name} was not written (exit {code}):\n{process.log()[-2000:]}')
    return json.loads(out.read_text())


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """Return user plus system CPU seconds of process `pid` (or of one of its threads)."""
    path = f'/proc/{pid}/task/{thread}/stat' if thread else f'/proc/{pid}/stat'
    with open(path) as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_mb(pid: int) -> dict[str, float]:
    """Return VmRSS and VmHWM (peak) of process `pid`, in MB."""
    values = {}
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            key = line.split(':', 1)[0]
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(line.split()[1]) / 1024
    return values


class CpuMeter:
    """Main-thread and whole-process CPU of the node between start() and stop()."""

    def __init__(self, pid: int) -> None:
        """Measure process `pid`; its main thread has the same id."""
        self.pid = pid

    def start(self) -> None:
        """Begin a measurement."""
        self._t0 = time.monotonic()
        self._main0, self._all0 = cpu_seconds(self.pid, self.pid), cpu_seconds(self.pid)

    def stop(self) -> dict[str, float]:
        """End it; return CPU use in percent of one core."""
        wall = time.monotonic() - self._t0
        return {'main_thread_cpu_pct': 100 * (cpu_seconds(self.pid, self.pid) - self._main0)
                / wall, 'process_cpu_pct': 100 * (cpu_seconds(self.pid) - self._all0) / wall}


class Observer:
    """The load test's own ROS node: watches diagnostics and calls the node's services."""

    def __init__(self) -> None:
        """Create a context, a node and a spinning thread."""
        ros_environment()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('loadtest_observer', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: list[tuple[float, Any]] = []
        from diagnostic_msgs.msg import DiagnosticArray
        self.node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda msg: self.diagnostics.append((time.monotonic(), msg)), 50)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # the context was shut down under the executor
            pass

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.executor.shutdown()
        self._thread.join(10)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a service; return the response or None after `timeout`."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            return future.result() if done.wait(timeout) else None
        finally:
            self.node.destroy_client(client)

    def frames_received(self, camera: str) -> int:
        """Return the node's latest 'frames received' count for `camera` (0 before any)."""
        for _, array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.endswith(f': camera {camera}'):
                    values = {kv.key: kv.value for kv in status.values}
                    return int(values.get('frames received', 0))
        return 0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               process: Process | None = None) -> Any:
    """Poll `predicate` until true; raise RuntimeError with the node log after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.process.poll() is not None:
            break
        time.sleep(0.1)
    log = process.log()[-2000:] if process is not None else ''
    raise RuntimeError(f'timed out waiting for {what}\n{log}')
