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
The helper processes of the load test, one role each: ``python -m ...roles ROLE [options]``.

- ``camera``: publishes generated scenes (raw rgb8 or JPEG) at a fixed rate, with sensor QoS.
- ``listener``: a plain rclpy subscriber on the same stream, counting frames (the reference).
- ``asker``: Ask calls, either at a rate on a camera or in bursts of concurrent calls with
  request images; writes every call's outcome.
- ``standin-node``: the real node whose runtime takes at least ``--delay`` seconds per answer
  (the real demo model underneath, then a sleep): a stand-in for a slow model, to measure that
  monitoring keeps its period while the worker is busy.

Each role writes its result as JSON to ``--out`` and exits 0 on SIGINT/SIGTERM or at the end.
"""

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from superneuron_interfaces.srv import Ask
from superneuron_ros.lab import scenes
from superneuron_ros.node.image_conversion import rgb_to_image


def scene_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Render `count` generated scenes of `width` x `height` pixels (RGB uint8)."""
    rng = np.random.default_rng(seed)
    return [scenes.render(scenes.random_scene(rng), (width, height)) for _ in range(count)]


def _frame_msg(rgb: np.ndarray, fmt: str) -> Any:
    if fmt == 'jpeg':
        _, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
        return CompressedImage(format='jpeg', data=data.tobytes())
    return rgb_to_image(rgb)


class _Session:
    """A node in a context of its own, spun by a daemon thread, stopped by a signal."""

    def __init__(self, name: str) -> None:
        self.stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stop.set())
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while rclpy.ok() and not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def run_camera(args: argparse.Namespace) -> dict:
    """Publish frames at args.rate Hz for args.duration seconds; return the count."""
    width, height = args.size
    frames = [_frame_msg(rgb, args.format) for rgb in scene_frames(8, width, height)]
    session = _Session('loadtest_camera')
    msg_type = CompressedImage if args.format == 'jpeg' else Image
    publisher = session.node.create_publisher(msg_type, args.topic, qos_profile_sensor_data)
    deadline = time.monotonic() + args.wait
    while publisher.get_subscription_count() < args.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # both sides matched
    published, start = 0, time.monotonic()
    while not session.stop.is_set() and time.monotonic() - start < args.duration:
        msg = frames[published % len(frames)]
        msg.header.stamp = session.node.get_clock().now().to_msg()
        msg.header.frame_id = 'loadtest_camera'
        publisher.publish(msg)
        published += 1
        time.sleep(max(0.0, start + published / args.rate - time.monotonic()))
    elapsed = time.monotonic() - start
    session.close()
    return {'published': published, 'seconds': elapsed, 'rate_hz': published / elapsed}


def run_listener(args: argparse.Namespace) -> dict:
    """Count the frames of args.topic until stopped; return count and rate."""
    session = _Session('loadtest_listener')
    arrivals: list[float] = []
    msg_type = CompressedImage if args.format == 'jpeg' else Image
    session.node.create_subscription(msg_type, args.topic,
                                     lambda msg: arrivals.append(time.monotonic()),
                                     qos_profile_sensor_data)
    deadline = time.monotonic() + args.duration
    while not session.stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    session.close()
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {'received': len(arrivals), 'rate_hz': (len(arrivals) - 1) / span if span else 0.0}


def _call(client: Any, request: Any, timeout: float) -> tuple[Any, float]:
    done = threading.Event()
    sent = time.monotonic()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        return None, timeout
    return future.result(), time.monotonic() - sent


def _outcome(response: Any, seconds: float) -> dict:
    if response is None:
        return {'status': 'none', 'seconds': seconds}
    if not response.success:
        return {'status': response.refusal or 'error', 'error': response.error,
                'seconds': seconds}
    return {'status': 'answered', 'seconds': seconds,
            'answers': [[a.task, a.label, [float(s) for s in a.scores]]
                        for a in response.answers]}


def run_asker(args: argparse.Namespace) -> dict:
    """Ask at args.rate Hz on a camera, or in bursts of args.concurrent calls with images."""
    session = _Session(f'loadtest_asker_{args.seed}')
    # Every client's reader receives the replies to all clients of the service and keeps only
    # its own: with the default depth of 10, a burst of replies can push its own one out.
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    clients = [session.node.create_client(Ask, args.service, qos_profile=qos)
               for _ in range(max(1, args.concurrent))]
    for client in clients:
        client.wait_for_service(timeout_sec=30.0)
    calls = []
    if args.rate > 0:
        image = Image()
        if args.request_image:  # an image in each request instead of the camera's frame
            image = rgb_to_image(scene_frames(1, *args.size)[0])
        start = time.monotonic()
        while not session.stop.is_set() and time.monotonic() - start < args.duration:
            response, seconds = _call(clients[0], Ask.Request(
                tasks=args.tasks, camera=args.camera, image=image), args.timeout)
            calls.append(_outcome(response, seconds))
            time.sleep(max(0.0, start + len(calls) / args.rate - time.monotonic()))
    else:
        width, height = args.size
        images = [rgb_to_image(rgb) for rgb in scene_frames(args.images, width, height)]
        for client in clients:  # one call each first, so that every reply path is matched
            response, _ = _call(client, Ask.Request(tasks=args.tasks, image=images[0]), 60.0)
            if response is None or response.refusal:
                session.close()
                return {'calls': [], 'burst_times': [], 'ended': time.monotonic(),
                        'warmup_failed': True}
        if args.started:
            with open(args.started, 'w', encoding='utf-8') as marker:
                marker.write('ready')
        session_calls = [[] for _ in range(args.bursts)]
        burst_times = []
        for burst in range(args.bursts):
            if session.stop.is_set():
                break
            done, futures, finished_at = threading.Event(), [], {}
            lock = threading.Lock()

            def finished(future: Any) -> None:
                with lock:
                    finished_at[id(future)] = time.monotonic()
                    if len(finished_at) == len(clients):
                        done.set()
            sent = time.monotonic()
            burst_times.append(sent)  # CLOCK_MONOTONIC: comparable across processes
            for i, client in enumerate(clients):
                index = (args.seed * 7 + burst * len(clients) + i) % len(images)
                future = client.call_async(Ask.Request(tasks=args.tasks, image=images[index]))
                futures.append((index, future))
                future.add_done_callback(finished)
            done.wait(args.timeout)
            for index, future in futures:
                with lock:
                    end = finished_at.get(id(future))
                response = future.result() if end is not None else None
                outcome = _outcome(response, (end or time.monotonic()) - sent)
                outcome['image'] = index
                session_calls[burst].append(outcome)
            if any(c['status'] in ('none', 'shutting down') for c in session_calls[burst]):
                break  # the node is going: no more bursts
            if args.pause > 0:
                time.sleep(args.pause)
        calls = [call for burst in session_calls for call in burst]
        session.close()
        return {'calls': calls, 'burst_times': burst_times, 'ended': time.monotonic()}
    session.close()
    return {'calls': calls}


def run_standin_node(args: argparse.Namespace, ros_args: list[str]) -> int:
    """Run the real node with a runtime slowed to at least args.delay seconds per answer."""
    from superneuron_ros.node.main import main
    from superneuron_ros.node.model import load_runtime

    class SlowRuntime:
        """The loaded runtime, answering no faster than `delay` seconds (a slow stand-in)."""

        def __init__(self, runtime: Any, delay: float) -> None:
            self._runtime, self._delay = runtime, delay

        def __getattr__(self, name: str) -> Any:
            return getattr(self._runtime, name)

        def answer(self, image: Any, names: Any) -> Any:
            start = time.monotonic()
            result = self._runtime.answer(image, names)
            time.sleep(max(0.0, self._delay - (time.monotonic() - start)))
            return result

    return main(ros_args, loader=lambda config, profiles: SlowRuntime(
        load_runtime(config, profiles), args.delay))


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split('x')
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    """Run one role; see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    ros_args = argv[argv.index('--ros-args'):] if '--ros-args' in argv else []
    argv = argv[:len(argv) - len(ros_args)]
    parser = argparse.ArgumentParser(description='a helper process of superneuron loadtest')
    parser.add_argument('role', choices=['camera', 'listener', 'asker', 'standin-node'])
    parser.add_argument('--out', default='')
    parser.add_argument('--topic', default='')
    parser.add_argument('--format', choices=['raw', 'jpeg'], default='raw')
    parser.add_argument('--size', type=_size, default=(640, 480))
    parser.add_argument('--rate', type=float, default=0.0)
    parser.add_argument('--duration', type=float, default=30.0)
    parser.add_argument('--wait', type=float, default=60.0)
    parser.add_argument('--subscribers', type=int, default=2)
    parser.add_argument('--service', default='/superneuron/ask')
    parser.add_argument('--tasks', nargs='+', default=['red_present'])
    parser.add_argument('--camera', default='')
    parser.add_argument('--concurrent', type=int, default=1)
    parser.add_argument('--bursts', type=int, default=1)
    parser.add_argument('--images', type=int, default=8)
    parser.add_argument('--pause', type=float, default=0.0)
    parser.add_argument('--timeout', type=float, default=120.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--delay', type=float, default=0.3)
    parser.add_argument('--request-image', action='store_true')
    parser.add_argument('--started', default='', help='file written once the warm-up is done')
    args = parser.parse_args(argv)
    if args.role == 'standin-node':
        return run_standin_node(args, ros_args)
    result = {'camera': run_camera, 'listener': run_listener, 'asker': run_asker}[args.role](args)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as out:
            json.dump(result, out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
