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
The load test's scenarios (issue 12), each returning its figures as a JSON-ready dict.

- intake: a camera at `rate` Hz (raw or JPEG), a standing task on every frame, Ask at 5 Hz;
  frames the node took against a plain subscriber of the same stream, standing answers, Ask
  latency against an idle node, the node's main-thread CPU.
- burst: concurrent Ask calls from several processes; every call's outcome, answers compared
  with sequential calls on the same images.
- diagnostics: a slow stand-in model and a queue of calls; the largest /diagnostics gap.
- sigint: SIGINT to the node during bursts; calls without a response, exit code.
- memory: a 30 Hz stream for minutes; the node's VmRSS at each sample.
"""

import math
from pathlib import Path
import time
from typing import Any

import numpy as np
from superneuron_interfaces.msg import Answer
from superneuron_interfaces.srv import Ask
from superneuron_ros.lab.loadtest.processes import (CpuMeter, memory_mb, NODE, Observer,
                                                    read_result, start_node, start_role,
                                                    wait_until)
from superneuron_ros.lab.loadtest.roles import scene_frames
from superneuron_ros.node.image_conversion import rgb_to_image

DATA = Path(__file__).resolve().parents[2] / 'data'
CAMERA_TOPIC = '/loadtest/camera'


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


def _latencies(calls: list[dict]) -> dict:
    seconds = [1e3 * c['seconds'] for c in calls if c['status'] == 'answered']
    return {'calls': len(calls), 'answered': len(seconds),
            'p50_ms': _percentile(seconds, 50), 'p95_ms': _percentile(seconds, 95),
            'statuses': {s: sum(c['status'] == s for c in calls)
                         for s in sorted({c['status'] for c in calls})}}


class Setup:
    """A node process (real or stand-in) with an observer, in one work folder."""

    def __init__(self, folder: Path, args: Any, fmt: str = 'raw', standing: bool = True,
                 role: str = '', **extra: Any) -> None:
        """Start the node and wait until it answers Ask."""
        self.folder = folder
        params = {'model_path': str(args.model), 'profiles': [str(args.profiles)],
                  'quantization': args.quantization, 'device': args.device,
                  'cameras': ['cam'], 'cam': {'topic': CAMERA_TOPIC,
                                              'transport': 'compressed' if fmt == 'jpeg'
                                              else 'raw'},
                  'standing_tasks': ['red_present@cam'] if standing else [''],
                  'max_image_age': 2.0, 'diagnostics_period': 1.0, **extra}
        self.node = start_node(folder, params, role=role)
        self.observer = Observer()
        probe = Ask.Request(tasks=['red_present'],
                            image=rgb_to_image(scene_frames(1, 64, 64)[0]))
        wait_until(lambda: (r := self.observer.call(Ask, f'{NODE}/ask', probe, 10.0))
                   and r.success, 300.0, 'the node to answer', self.node)

    def close(self) -> int:
        """Stop the node; return its exit code."""
        self.observer.close()
        return self.node.stop()


def intake(folder: Path, args: Any) -> dict:
    """Run the camera scenario; see the module docstring."""
    setup = Setup(folder, args, fmt=args.format)
    size = f'{args.size[0]}x{args.size[1]}'
    try:
        # The idle baseline: the same stream at 1 Hz, the same Ask calls on its frames.
        slow, slow_out = start_role(folder, 'camera', 'idle_camera', '--topic', CAMERA_TOPIC,
                                    '--format', args.format, '--size', size, '--rate', '1',
                                    '--duration', '16', '--subscribers', '1')
        wait_until(lambda: setup.observer.frames_received('cam') > 0, 90.0, 'the first frame',
                   setup.node)
        idle_p, idle_out = start_role(folder, 'asker', 'idle_asker', '--service',
                                      f'{NODE}/ask', '--rate', str(args.ask_rate),
                                      '--camera', 'cam', '--duration', '10')
        idle = _latencies(read_result(idle_p, idle_out, 60)['calls'])
        read_result(slow, slow_out, 60)
        before = setup.observer.frames_received('cam')
        answers: list[tuple[float, Any]] = []
        setup.observer.node.create_subscription(
            Answer, f'{NODE}/answers/red_present',
            lambda msg: answers.append((time.monotonic(), msg)), 100)
        listener, listener_out = start_role(folder, 'listener', 'listener', '--topic',
                                            CAMERA_TOPIC, '--format', args.format,
                                            '--duration', str(args.duration + 90))
        camera, camera_out = start_role(folder, 'camera', 'camera', '--topic', CAMERA_TOPIC,
                                        '--format', args.format, '--size', size, '--rate',
                                        str(args.rate), '--duration', str(args.duration))
        wait_until(lambda: setup.observer.frames_received('cam') > before, 90.0,
                   'the first frame', setup.node)
        meter = CpuMeter(setup.node.pid)
        meter.start()
        asker, asker_out = start_role(folder, 'asker', 'asker', '--service', f'{NODE}/ask',
                                      '--rate', str(args.ask_rate), '--camera', 'cam',
                                      '--duration', str(max(1.0, args.duration - 8)))
        published = read_result(camera, camera_out, args.duration + 120)
        cpu = meter.stop()
        time.sleep(2.5)  # the last diagnostics carry the final count
        node_frames = setup.observer.frames_received('cam') - before
        listener.signal()
        reference = read_result(listener, listener_out, 30)
        loaded = _latencies(read_result(asker, asker_out, 60)['calls'])
        memory = memory_mb(setup.node.pid)
    finally:
        code = setup.close()
    latency = [msg.latency_ms for _, msg in answers]
    stamps = [msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec for _, msg in answers]
    return {
        'scenario': 'intake', 'format': args.format, 'size': size, 'rate_hz': args.rate,
        'duration_s': args.duration, 'published': published['published'],
        'plain_subscriber_frames': reference['received'], 'node_frames': node_frames,
        'node_vs_plain': node_frames / max(1, reference['received']),
        'standing_answers': len(answers),
        'standing_answers_in_order': stamps == sorted(stamps),
        'standing_latency_p50_ms': _percentile(latency, 50),
        'standing_latency_p95_ms': _percentile(latency, 95),
        'ask_idle': idle, 'ask_loaded': loaded,
        'ask_p95_ratio': loaded['p95_ms'] / idle['p95_ms'] if idle['answered'] else math.nan,
        **cpu, **memory, 'node_exit_code': code}


def _by_image(calls: list[dict]) -> dict[int, list]:
    return {c['image']: c['answers'] for c in calls if c['status'] == 'answered'}


def _same(a: list, b: list) -> bool:
    return all(x[:2] == y[:2] and np.allclose(x[2], y[2], atol=1e-4) for x, y in zip(a, b))


def burst(folder: Path, args: Any) -> dict:
    """Run the concurrent-calls scenario; see the module docstring."""
    setup = Setup(folder, args, standing=False)
    common = ['--service', f'{NODE}/ask', '--images', '16', '--size', '64x64',
              '--tasks', 'red_present', 'shape_count', '--timeout', '120']
    try:
        seq_p, seq_out = start_role(folder, 'asker', 'sequential', *common, '--concurrent', '1',
                                    '--bursts', '16')
        sequential = _by_image(read_result(seq_p, seq_out, 600)['calls'])
        askers = [start_role(folder, 'asker', f'burst{i}', *common, '--seed', str(i + 1),
                             '--concurrent', str(args.concurrent), '--bursts',
                             str(args.bursts)) for i in range(args.processes)]
        calls = [c for p, out in askers for c in read_result(p, out, 3600)['calls']]
    finally:
        code = setup.close()
    answered = [c for c in calls if c['status'] == 'answered']
    equal = sum(_same(c['answers'], sequential[c['image']]) for c in answered
                if c['image'] in sequential)
    return {'scenario': 'burst', 'processes': args.processes, 'concurrent': args.concurrent,
            'bursts': args.bursts, **_latencies(calls),
            'without_response': sum(c['status'] == 'none' for c in calls),
            'equal_to_sequential': equal, 'compared': len(answered), 'node_exit_code': code}


def diagnostics(folder: Path, args: Any) -> dict:
    """Run the slow stand-in scenario; see the module docstring."""
    period = 0.2
    setup = Setup(folder, args, standing=False, role='standin-node',
                  diagnostics_period=period, max_queue=64)
    try:
        asker, out = start_role(folder, 'asker', 'queued', '--service', f'{NODE}/ask',
                                '--concurrent', str(args.queued), '--bursts', '1',
                                '--size', '64x64', '--timeout', '120')
        result = read_result(asker, out, 300)
        calls, start, end = result['calls'], result['burst_times'][0], result['ended']
        times = [t for t, _ in setup.observer.diagnostics if start <= t <= end]
    finally:
        code = setup.close()
    gaps = np.diff(times) if len(times) > 1 else np.array([math.nan])
    return {'scenario': 'diagnostics', 'standin_delay_s': 0.3, 'queued_calls': args.queued,
            'period_s': period, 'messages': len(times), 'max_gap_s': float(gaps.max()),
            'max_gap_vs_period': float(gaps.max()) / period,
            'p95_gap_s': float(np.percentile(gaps, 95)), **_latencies(calls),
            'node_exit_code': code}


def sigint(folder: Path, args: Any) -> dict:
    """Run the SIGINT-during-bursts scenario; see the module docstring."""
    setup = Setup(folder, args, standing=False)
    try:
        markers = [folder / f'sigint{i}.started' for i in range(args.processes)]
        askers = [start_role(folder, 'asker', f'sigint{i}', '--service', f'{NODE}/ask',
                             '--seed', str(i + 1), '--concurrent', str(args.concurrent),
                             '--bursts', '1000', '--size', '64x64', '--timeout', '30',
                             '--started', str(markers[i])) for i in range(args.processes)]
        wait_until(lambda: all(m.exists() for m in markers), 600.0, 'the Ask clients',
                   setup.node)
        time.sleep(args.sigint_after)  # bursts from every process are in flight
        setup.node.signal()
        exit_code = setup.node.wait(60)
        calls = [c for p, out in askers for c in read_result(p, out, 120)['calls']]
        log = setup.node.log()
    finally:
        setup.close()
    return {'scenario': 'sigint', 'processes': args.processes,
            'concurrent': args.concurrent, 'sigint_after_s': args.sigint_after,
            **_latencies(calls),
            'without_response': sum(c['status'] == 'none' for c in calls),
            'node_exit_code': exit_code, 'traceback_in_log': 'Traceback' in log}


def memory(folder: Path, args: Any) -> dict:
    """Run the long-stream scenario; see the module docstring."""
    setup = Setup(folder, args, fmt=args.format)
    size = f'{args.size[0]}x{args.size[1]}'
    samples = []
    try:
        camera, camera_out = start_role(folder, 'camera', 'camera', '--topic', CAMERA_TOPIC,
                                        '--format', args.format, '--size', size, '--rate',
                                        str(args.rate), '--duration', str(args.duration),
                                        '--subscribers', '1')
        wait_until(lambda: setup.observer.frames_received('cam') > 0, 90.0, 'the first frame',
                   setup.node)
        start = time.monotonic()
        while camera.process.poll() is None:
            samples.append({'t_s': round(time.monotonic() - start, 1),
                            **memory_mb(setup.node.pid),
                            'frames': setup.observer.frames_received('cam')})
            time.sleep(args.sample)
        read_result(camera, camera_out, 30)
    finally:
        code = setup.close()
    rss = [s['VmRSS'] for s in samples]
    half = rss[len(rss) // 2:] if rss else []
    growth = 100 * (half[-1] - half[0]) / half[0] if len(half) > 1 else math.nan
    return {'scenario': 'memory', 'format': args.format, 'size': size, 'rate_hz': args.rate,
            'duration_s': args.duration, 'samples': samples,
            'last_half_growth_pct': growth, 'node_exit_code': code}


SCENARIOS = {'intake': intake, 'burst': burst, 'diagnostics': diagnostics, 'sigint': sigint,
             'memory': memory}
