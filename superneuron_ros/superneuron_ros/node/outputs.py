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
The standing tasks' answer topics: one Answer topic (and a yes/no Bool) per task and camera.

A task that stands on one camera publishes on ``~/answers/<task>`` (and ``~/answers/<task>/yes``
for yes/no tasks); a task that stands on several cameras publishes each camera's answers on
``~/answers/<task>/<camera>`` (and ``.../<camera>/yes``), so that a plot never mixes cameras.
"""

import threading
from typing import Any, Sequence

from std_msgs.msg import Bool
from superneuron_interfaces.msg import Answer
from superneuron_ros.node.params import StandingTask, topic_token


def answer_topics(tasks: Sequence[StandingTask]) -> dict[tuple[str, str], str]:
    """Map each (task, camera) of `tasks` to its Answer topic (relative to the node)."""
    cameras = {t.task: [s.camera for s in tasks if s.task == t.task] for t in tasks}
    return {(t.task, t.camera): (f'~/answers/{topic_token(t.task)}' if len(cameras[t.task]) == 1
                                 else f'~/answers/{topic_token(t.task)}/{t.camera}')
            for t in tasks}


class AnswerTopics:
    """The publishers of the standing answers; publishing is thread-safe."""

    def __init__(self, node: Any) -> None:
        """Create publishers on `node` (an rclpy Node) as tasks are set."""
        self.node = node
        self.lock = threading.Lock()
        self._pubs: dict[tuple[str, str], tuple[str, Any, Any]] = {}  # key: (topic, pub, yes)

    def update(self, tasks: Sequence[StandingTask], yes_no: set[str]) -> list[tuple[str, str]]:
        """
        Publish for exactly `tasks` (yes/no Bools for the task names in `yes_no`).

        Publishers no longer needed are destroyed; returns the (task, camera) pairs removed.
        """
        wanted = answer_topics(tasks)
        removed = []
        with self.lock:
            for key in list(self._pubs):
                if wanted.get(key) != self._pubs[key][0]:
                    self._destroy(self._pubs.pop(key))
                    removed.append(key)
            for key, topic in wanted.items():
                if key not in self._pubs:
                    self._pubs[key] = (topic, self.node.create_publisher(Answer, topic, 10),
                                       self.node.create_publisher(Bool, f'{topic}/yes', 10)
                                       if key[0] in yes_no else None)
        return [key for key in removed if key not in wanted]

    def _destroy(self, entry: tuple[str, Any, Any]) -> None:
        for publisher in entry[1:]:
            if publisher is not None:
                self.node.destroy_publisher(publisher)

    def clear(self) -> None:
        """Destroy every publisher."""
        with self.lock:
            entries, self._pubs = list(self._pubs.values()), {}
            for entry in entries:
                self._destroy(entry)

    def publish(self, task: str, camera: str, answer: Answer, yes: bool | None) -> None:
        """Publish one answer (and its yes/no Bool); dropped if the task was just removed."""
        with self.lock:
            entry = self._pubs.get((task, camera))
            if entry is None:
                return
            entry[1].publish(answer)
            if yes is not None and entry[2] is not None:
                entry[2].publish(Bool(data=yes))
