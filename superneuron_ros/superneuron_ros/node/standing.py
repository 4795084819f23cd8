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
Standing tasks: which configured tasks are due on which newest frame, never building a backlog.

The inference worker (worker.py) asks the scheduler for due batches. When a camera has a frame
newer than the one a due task last saw, the batch is the camera's newest frame with every due
task of that camera, answered in one runtime call (one vision pass). Frames that arrived while
a task was due but were replaced before the worker got to them count as dropped.
"""

from dataclasses import dataclass
from typing import Sequence

from superneuron_ros.node.cameras import Frame, FrameStore
from superneuron_ros.node.params import StandingTask


@dataclass(frozen=True)
class Batch:
    """Due tasks of one camera, to be answered together on one frame."""

    frame: Frame
    tasks: tuple[StandingTask, ...]
    dropped: tuple[int, ...]  # per task, frames skipped since its previous answer


class _State:
    def __init__(self, last_seq: int) -> None:
        self.last_seq = last_seq  # newest frame this task has consumed
        self.due = 0.0  # monotonic time from which the task wants a new frame


class StandingScheduler:
    """Decides which standing tasks are due on which frame; pure logic, not thread-safe."""

    def __init__(self, tasks: Sequence[StandingTask], store: FrameStore) -> None:
        """Schedule `tasks`, starting after the frames already in `store`."""
        self.store = store
        self.tasks = tuple(tasks)
        self._state = {t: _State(store.seq(t.camera)) for t in self.tasks}
        self._turn = 0  # cameras take turns, so that a fast camera cannot starve the others

    def due(self, now: float) -> list[Batch]:
        """Return one batch per camera that has a new frame for a due task, next turn first."""
        batches = []
        cameras = self.store.cameras
        for camera in cameras[self._turn:] + cameras[:self._turn]:
            frame = self.store.latest(camera)
            if frame is None:
                continue
            ready = [t for t in self.tasks if t.camera == camera
                     and frame.seq > self._state[t].last_seq and now >= self._state[t].due]
            if ready:
                dropped = tuple(self._skipped(t, frame) for t in ready)
                batches.append(Batch(frame, tuple(ready), dropped))
        return batches

    def _skipped(self, task: StandingTask, frame: Frame) -> int:
        state = self._state[task]
        since = state.due if task.rate_hz > 0 else float('-inf')
        return self.store.count_between(task.camera, state.last_seq, frame.seq, since)

    def consume(self, batch: Batch, started: float) -> None:
        """Mark the batch's frame as seen by its tasks and schedule their next answers."""
        cameras = self.store.cameras
        self._turn = (cameras.index(batch.frame.camera) + 1) % len(cameras)
        for task in batch.tasks:
            state = self._state[task]
            state.last_seq = batch.frame.seq
            if task.rate_hz > 0:
                period = task.period_s
                state.due = (state.due + period if state.due + period > started
                             else started + period)

    def wait_time(self, now: float) -> float | None:
        """Seconds until a task with a new frame becomes due; None: wait for a new frame."""
        waits = [self._state[t].due - now for t in self.tasks
                 if self.store.seq(t.camera) > self._state[t].last_seq]
        return max(0.0, min(waits)) if waits else None
