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
The demo's client: asks the node, listens to its answers, and scores them against the truth.

Everything it shows comes from the superneuron node over ROS: standing-task answers on
``<node>/answers/<task>`` (``<node>/answers/<task>/<camera>`` for a task on several cameras),
``<node>/ask`` calls (on a camera's newest frame and on an image sent in
the request) and ``<node>/latency``. The scene camera's ``scene_truth`` topic gives the true answer
for each published frame, matched by camera and image stamp.
"""

from dataclasses import dataclass
import json
import statistics
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from superneuron_interfaces.msg import Answer, LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks
from superneuron_ros.lab import scenes
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.outputs import answer_topics
from superneuron_ros.node.params import parse_standing_task


@dataclass
class Event:
    """One answer the node gave, with the truth when it is known."""

    source: str  # 'standing', 'ask' or 'ask+image'
    task: str
    camera: str
    stamp: tuple[int, int]
    label: str
    confidence: float
    latency_ms: float
    truth: str | None = None
    question: str = ''
    received: float = 0.0  # monotonic seconds when the client got it


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile, q in 0..100, of the values (NaN when there are none)."""
    return float(np.percentile(values, q)) if values else float('nan')


class DemoClient(Node):
    """Collects the node's answers and the scene truth; calls Ask on a timer."""

    def __init__(self, target: str, standing: list[str], asked: list[tuple[str, str]],
                 ask_rate: float, image_every: int, size: int, seed: int,
                 context: Any = None) -> None:
        """
        Subscribe to `target`'s outputs; `asked` lists (task, camera) pairs to Ask about.

        `standing` lists the node's standing tasks as written in its parameter
        (``TASK@CAMERA[:RATE]``), from which the answer topics follow.
        """
        super().__init__('superneuron_demo_client', context=context)
        self.target = target.rstrip('/')
        self.group = ReentrantCallbackGroup()
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.truth: dict[tuple[str, int, int], dict] = {}
        self.latency: dict[str, LatencyStats] = {}  # 'task@camera' -> newest stats
        self.failures: list[str] = []
        self.questions: dict[str, str] = {}
        self.asked = asked
        self.image_every = image_every
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.ask_count = 0
        self.ask_client = self.create_client(Ask, f'{self.target}/ask',
                                             callback_group=self.group)
        self.list_client = self.create_client(ListTasks, f'{self.target}/list_tasks',
                                              callback_group=self.group)
        self.create_subscription(String, 'scene_truth', self._on_truth, 50,
                                 callback_group=self.group)
        self.create_subscription(LatencyStats, f'{self.target}/latency', self._on_latency, 10,
                                 callback_group=self.group)
        self.model_error = ''
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10,
                                 callback_group=self.group)
        self.answer_topics: set[str] = set()
        self.listen(standing)
        self.ask_timer = None
        self.ask_period = 1.0 / ask_rate if ask_rate > 0 else None

    def listen(self, standing: list[str]) -> None:
        """Subscribe to the answer topics of `standing` entries not listened to yet."""
        tasks = [parse_standing_task(entry, [entry.split('@')[-1].split(':')[0]])
                 for entry in standing]
        for topic in sorted(set(answer_topics(tasks).values()) - self.answer_topics):
            self.create_subscription(Answer, self.target + topic[1:], self._on_answer, 10,
                                     callback_group=self.group)
            self.answer_topics.add(topic)

    def wait_ready(self, timeout: float) -> list:
        """
        Wait until the node is active; return its task list (TaskInfo messages).

        Raises RuntimeError as soon as the node reports in /diagnostics that its model failed.
        """
        deadline = time.monotonic() + timeout
        for client in (self.list_client, self.ask_client):
            while not client.wait_for_service(timeout_sec=0.5):
                if self.model_error:
                    raise RuntimeError(f'the node failed to configure: {self.model_error}')
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{client.srv_name} did not appear within {timeout:.0f} s'
                                       ': see the node log')
        # The services exist in every state: wait until the model is loaded and the node active.
        while True:
            tasks = list(self._result(self.list_client, ListTasks.Request(), deadline).tasks)
            if tasks:
                probe = self._result(self.ask_client, Ask.Request(tasks=[tasks[0].name]),
                                     deadline)
                if probe.refusal != 'inactive':
                    break
            if self.model_error:
                raise RuntimeError(f'the node failed to configure: {self.model_error}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'the node was not active within {timeout:.0f} s: see its '
                                   'log')
            time.sleep(0.2)
        self.questions = {info.name: info.question for info in tasks}
        return tasks

    @staticmethod
    def _wait(future: Any, deadline: float) -> Any:
        """Return an rclpy future's result, waiting until `deadline` (monotonic seconds)."""
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not future.done():
            raise TimeoutError('no answer in time')
        return future.result()

    @staticmethod
    def _result(client: Any, request: Any, deadline: float) -> Any:
        try:
            return DemoClient._wait(client.call_async(request), deadline)
        except TimeoutError:
            raise TimeoutError(f'{client.srv_name} did not answer') from None

    def start_asking(self) -> None:
        """Start calling Ask on a timer."""
        if self.ask_period and self.asked:
            self.ask_timer = self.create_timer(self.ask_period, self._ask,
                                               callback_group=self.group)

    def _on_truth(self, msg: String) -> None:
        data = json.loads(msg.data)
        with self.lock:
            self.truth[(data['camera'], *data['stamp'])] = data['answers']

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(': model') and status.level == DiagnosticStatus.ERROR:
                self.model_error = status.message

    def _on_latency(self, msg: LatencyStats) -> None:
        with self.lock:
            self.latency[f'{msg.task or "all"}@{msg.camera or "all"}'] = msg

    def _on_answer(self, msg: Answer) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self._record(Event('standing', msg.task, msg.header.frame_id, stamp, msg.label,
                           msg.confidence, msg.latency_ms))

    def _record(self, event: Event) -> None:
        event.question = self.questions.get(event.task, event.task)
        event.received = time.monotonic()
        with self.lock:
            self.events.append(event)

    def _ask(self) -> None:
        task, camera = self.asked[self.ask_count % len(self.asked)]
        self.ask_count += 1
        request = Ask.Request(tasks=[task], camera=camera)
        truth = None
        source = 'ask'
        if self.image_every and self.ask_count % self.image_every == 0:
            scene = scenes.random_scene(self.rng, varied=True)
            request.image = rgb_to_image(scenes.render(scene, (self.size, self.size)))
            request.image.header.stamp = self.get_clock().now().to_msg()
            request.image.header.frame_id = 'request'
            truth, source, camera = scenes.answer(task, scene), 'ask+image', 'request'
        sent = time.monotonic()
        future = self.ask_client.call_async(request)
        future.add_done_callback(
            lambda f: self._on_ask_done(f, task, camera, source, truth, sent))

    def _on_ask_done(self, future, task: str, camera: str, source: str,
                     truth: str | None, sent: float) -> None:
        response = future.result()
        if not response.success:
            with self.lock:
                self.failures.append(f'{task}@{camera}: {response.error}')
            return
        answer = response.answers[0]
        event = Event(source, task, camera, (answer.header.stamp.sec, answer.header.stamp.nanosec),
                      answer.label, answer.confidence, answer.latency_ms, truth)
        self._record(event)

    def resolve(self, event: Event) -> str | None:
        """Return the true label of an event's frame, or None if unknown or not applicable."""
        if event.truth is not None or event.source == 'ask+image':
            return event.truth
        with self.lock:
            answers = self.truth.get((event.camera, *event.stamp))
        return None if answers is None else answers.get(event.task)

    def summary(self) -> dict:
        """Accuracy and latency per task and source, and the node's frame counts."""
        with self.lock:
            events = list(self.events)
            latency = dict(self.latency)
            failures = list(self.failures)
        rows = {}
        for event in events:
            key = (event.task, event.source)
            row = rows.setdefault(key, {'answers': 0, 'scored': 0, 'correct': 0, 'latency': []})
            row['answers'] += 1
            row['latency'].append(event.latency_ms)
            truth = self.resolve(event)
            if truth is not None:
                row['scored'] += 1
                row['correct'] += int(truth == event.label)
        table = []
        for (task, source), row in sorted(rows.items()):
            table.append({
                'task': task, 'source': source, 'answers': row['answers'],
                'scored': row['scored'],
                'accuracy': row['correct'] / row['scored'] if row['scored'] else float('nan'),
                'p50_ms': statistics.median(row['latency']),
                'p95_ms': percentile(row['latency'], 95)})
        frames = {name: {'answered': int(msg.answered_frames), 'skipped': int(msg.dropped_frames)}
                  for name, msg in latency.items()}
        return {'rows': table, 'frames': frames, 'failures': failures}
