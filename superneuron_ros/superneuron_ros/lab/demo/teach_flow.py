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
The demo's teaching part: record frames of a question the node does not know, teach it, ask it.

While the standing answers go on, :class:`TeachDemo` takes frames of the ``arm`` scene camera,
labels each from the camera's ground truth (``scene_truth``, matched by stamp), and stores it
with the node's ``~/record`` service (the frame travels in the request, so the label belongs to
exactly that frame). Then it sends a ``~/teach`` goal, makes the new task a standing task
(``standing_tasks`` parameter), asks it about the arm camera's fresh frames, and scores every
answer against the truth. :func:`teaching_summary` gives the figures the demo prints.
"""

from collections import Counter, deque
import math
import threading
import time
from typing import Any, Callable

import numpy as np
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from superneuron_interfaces.action import Teach
from superneuron_interfaces.srv import Ask, Record
from superneuron_ros.lab import scenes
from superneuron_ros.lab.demo.client import DemoClient, Event, percentile
from superneuron_ros.node.image_conversion import rgb_to_image

FRAMES_KEPT = 64  # newest camera frames kept for recording


def longest_gap(times: list[float], start: float, end: float) -> float:
    """
    Return the longest time without an answer inside [start, end] (seconds).

    `times` are answer times; the gap before the first answer inside the window counts from the
    last answer before it (or from `start`), and the one after the last from `end`.
    """
    inside = sorted(t for t in times if start <= t <= end)
    before = [t for t in times if t < start]
    points = [max(before) if before else start] + inside + [end]
    return max(b - a for a, b in zip(points, points[1:]))


class TeachDemo:
    """Records, teaches and asks one new task through the node's ROS interfaces."""

    def __init__(self, client: DemoClient, task: str = 'yellow_present', camera: str = 'arm',
                 count: int = 200, rate: float = 10.0, max_exit_layer: int = 3,
                 log: Callable[[str], None] = print) -> None:
        """Create the Record, Teach and SetParameters clients on the demo client's node."""
        self.client, self.task, self.camera = client, task, camera
        self.spec = scenes.TASKS[task]
        self.count, self.rate, self.max_exit_layer, self.log = count, rate, max_exit_layer, log
        target, group = client.target, client.group
        self.frames: deque = deque(maxlen=FRAMES_KEPT)
        self.lock = threading.Lock()
        client.create_subscription(Image, f'/{camera}/image_raw', self._on_frame,
                                   qos_profile_sensor_data, callback_group=group)
        self.record_client = client.create_client(Record, f'{target}/record',
                                                  callback_group=group)
        self.params_client = client.create_client(SetParameters, f'{target}/set_parameters',
                                                  callback_group=group)
        self.teach_client = ActionClient(client, Teach, f'{target}/teach', callback_group=group)
        self.marks: dict[str, float] = {}
        self.counts: Counter = Counter()
        self.result: Any = None

    def _on_frame(self, msg: Image) -> None:
        with self.lock:
            self.frames.append(msg)

    def _labelled_frame(self, taken: set) -> tuple[Image, str] | None:
        """Return the newest frame not recorded yet whose truth has arrived, with its label."""
        with self.lock:
            frames = list(self.frames)
        for msg in reversed(frames):
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            if stamp in taken:
                continue
            with self.client.lock:
                truth = self.client.truth.get((self.camera, *stamp))
            if truth is not None and truth.get(self.task) is not None:
                return msg, truth[self.task]
        return None

    def record(self, timeout: float = 120.0) -> None:
        """Record `count` labelled frames at about `rate` per second."""
        deadline = time.monotonic() + timeout
        taken: set = set()
        while len(taken) < self.count:
            if time.monotonic() > deadline:
                raise TimeoutError(f'recorded only {len(taken)} of {self.count} frames in '
                                   f'{timeout:.0f} s: is the {self.camera} camera publishing?')
            frame = self._labelled_frame(taken)
            if frame is None:
                time.sleep(0.02)
                continue
            msg, label = frame
            sent = time.monotonic()
            self.marks.setdefault('record_start', sent)
            request = Record.Request(task=self.task, label=label, image=msg,
                                     labels=list(self.spec.labels), question=self.spec.question)
            response = DemoClient._result(self.record_client, request, sent + 30.0)
            if not response.success:
                raise RuntimeError(f'~/record failed: {response.error}')
            taken.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self.counts[label] += 1
            time.sleep(max(0.0, sent + 1.0 / self.rate - time.monotonic()))
        self.marks['record_end'] = time.monotonic()
        self.log(f'recorded {self.count} frames of {self.task} from the {self.camera} camera in '
                 f'{self.marks["record_end"] - self.marks["record_start"]:.1f} s: '
                 f'{dict(self.counts)}')

    def teach(self, timeout: float = 120.0) -> Any:
        """Send the ~/teach goal, log its progress, and return the result (a Teach.Result)."""
        if not self.teach_client.wait_for_server(timeout_sec=10.0):
            raise TimeoutError(f'{self.client.target}/teach is not available')
        shown = [0.0]

        def feedback(msg: Any) -> None:
            state = msg.feedback
            if time.monotonic() - shown[0] >= 2.0:
                shown[0] = time.monotonic()
                self.log(f'teaching {self.task}: {state.stage}, images '
                         f'{state.images_captured}/{state.images_total}, search steps '
                         f'{state.search_steps_done}/{state.search_steps_total}, '
                         f'{state.elapsed_s:.1f} s')

        goal = Teach.Goal(task=self.task, question=self.spec.question,
                          labels=list(self.spec.labels), max_exit_layer=self.max_exit_layer)
        self.marks['teach_start'] = time.monotonic()
        deadline = self.marks['teach_start'] + timeout
        handle = DemoClient._wait(self.teach_client.send_goal_async(goal, feedback), deadline)
        if not handle.accepted:
            raise RuntimeError('the node rejected the teach goal: see its log')
        self.result = DemoClient._wait(handle.get_result_async(), deadline).result
        self.marks['teach_end'] = time.monotonic()
        if not self.result.success:
            raise RuntimeError(f'~/teach failed: {self.result.error}')
        self.log(f'taught {self.task} in {self.result.seconds:.1f} s: exit layer '
                 f'{self.result.exit_layer}, cross-validated accuracy '
                 f'{self.result.cv_accuracy:.3f} +- {self.result.cv_accuracy_std:.3f} '
                 f"({self.result.cv_protocol}); model's own accuracy: "
                 + (f'{self.result.model_accuracy:.3f}'
                    if not math.isnan(self.result.model_accuracy)
                    else self.result.model_accuracy_note))
        return self.result

    def serve(self, standing: list[str]) -> list[str]:
        """
        Make the new task standing wherever tasks stand now, and add it to the Ask calls.

        It joins each camera (and rate) of `standing`, so its answers share the runtime calls
        already made for that camera's frames. Returns the new standing entries.
        """
        places = dict.fromkeys(entry.split('@', 1)[1] for entry in standing)
        entries = list(standing) + [f'{self.task}@{place}' for place in places]
        self.client.questions[self.task] = self.spec.question
        self.client.listen(entries)
        value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                               string_array_value=entries)
        request = SetParameters.Request(parameters=[Parameter(name='standing_tasks',
                                                              value=value)])
        reply = DemoClient._result(self.params_client, request, time.monotonic() + 30.0)
        if not reply.results[0].successful:
            raise RuntimeError(f'standing_tasks not set: {reply.results[0].reason}')
        self.client.asked.append((self.task, self.camera))
        return entries

    def check(self, count: int, timeout: float = 20.0, seed: int = 4242) -> int:
        """
        Ask the new task about `count` fresh balanced scenes sent in the request; return how many.

        One call at a time, each scene drawn for a label in turn (never recorded, never seen by
        the teach), answered with source 'check' and scored against its truth; stops at
        `timeout` seconds, so a busy machine gives a smaller n rather than a longer demo.
        """
        rng = np.random.default_rng(seed)
        labels = self.spec.labels
        deadline = time.monotonic() + timeout
        asked = 0
        while asked < count and time.monotonic() < deadline:
            truth = labels[asked % len(labels)]
            scene = scenes.sample_scene_for(self.task, truth, rng, varied=True)
            request = Ask.Request(tasks=[self.task])
            request.image = rgb_to_image(scenes.render(scene, (self.client.size,) * 2))
            request.image.header.stamp = self.client.get_clock().now().to_msg()
            request.image.header.frame_id = 'check'
            response = DemoClient._result(self.client.ask_client, request, deadline + 10.0)
            asked += 1
            if not response.success:
                raise RuntimeError(f'~/ask about {self.task} failed: {response.error}')
            answer = response.answers[0]
            self.client._record(Event('check', self.task, 'check',
                                      (answer.header.stamp.sec, answer.header.stamp.nanosec),
                                      answer.label, answer.confidence, answer.latency_ms, truth))
        self.log(f'asked {self.task} about {asked} fresh scenes sent in the request')
        return asked


def _window(events: list[Event], start: float, end: float) -> list[Event]:
    return [e for e in events if start <= e.received < end]


def teaching_summary(client: DemoClient, demo: TeachDemo, started: float) -> dict:
    """
    Return the teaching figures: times, the new task's accuracy on fresh frames, and latency.

    Latency is the standing answers' (the other tasks'), before recording, while recording and
    while teaching, each with the longest time without a standing answer on the front camera.
    """
    from superneuron_ros.lab.train_eval import wilson_interval
    with client.lock:
        events = list(client.events)
    marks = demo.marks
    new = [e for e in events if e.task == demo.task]
    scored = [(e, truth) for e in new for truth in [client.resolve(e)] if truth is not None]
    correct = sum(truth == e.label for e, truth in scored)
    low, high = wilson_interval(correct, len(scored)) if scored else (math.nan, math.nan)
    standing = [e for e in events if e.source == 'standing' and e.task != demo.task]
    phases = {'before': (started, marks.get('record_start', math.inf)),
              'recording': (marks.get('record_start', math.inf), marks.get('record_end', 0.0)),
              'teaching': (marks.get('teach_start', math.inf), marks.get('teach_end', 0.0))}
    front = [e.received for e in standing if e.camera == 'front']
    latency = {name: {'answers': len(chosen),
                      'p95_ms': percentile([e.latency_ms for e in chosen], 95),
                      'longest_gap_s': longest_gap(front, start, end) if end > start
                      else math.nan}
               for name, (start, end) in phases.items()
               for chosen in [_window(standing, start, end)]}
    result = demo.result
    first = min((e.received for e in new), default=math.nan)
    return {
        'task': demo.task, 'recorded': sum(demo.counts.values()), 'labels': dict(demo.counts),
        'record_s': marks.get('record_end', math.nan) - marks.get('record_start', math.nan),
        'teach_s': marks.get('teach_end', math.nan) - marks.get('teach_start', math.nan),
        'first_record_to_first_answer_s': first - marks.get('record_start', math.nan),
        'exit_layer': result.exit_layer if result is not None else -1,
        'cv_accuracy': result.cv_accuracy if result is not None else math.nan,
        'cv_accuracy_std': result.cv_accuracy_std if result is not None else math.nan,
        'cv_protocol': result.cv_protocol if result is not None else '',
        'model_accuracy': result.model_accuracy if result is not None else math.nan,
        'model_accuracy_note': result.model_accuracy_note if result is not None else '',
        'fresh': {'answers': len(new), 'scored': len(scored), 'correct': correct,
                  'accuracy': correct / len(scored) if scored else math.nan,
                  'wilson95': [low, high],
                  'by_source': dict(Counter(e.source for e, _ in scored))},
        'standing_latency': latency,
        'longest_gap_teaching_s': latency['teaching']['longest_gap_s'],
    }
