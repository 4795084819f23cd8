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
Standing tasks: answer configured tasks on the newest frames, never building a backlog.

One worker thread waits on the frame store's condition. When a camera has a frame newer than
the one a due task last saw, the worker takes the camera's newest frame and answers every due
task of that camera in one batch (one runtime call, so one vision pass). Frames that arrived
while a task was due but were replaced before the worker got to them count as dropped.
"""

from dataclasses import dataclass
import threading
import time
from typing import Callable, Sequence

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


class StandingWorker:
    """A daemon thread running the scheduler; answer() does conversion, inference, publishing."""

    def __init__(self, store: FrameStore, tasks: Sequence[StandingTask],
                 answer: Callable[[Batch], None],
                 on_error: Callable[[Batch, Exception], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """
        Answer `tasks` on frames of `store` by calling `answer(batch)` one batch at a time.

        An exception from `answer` is counted and passed to `on_error`; the worker goes on.
        """
        self.store = store
        self.answer = answer
        self.on_error = on_error
        self.clock = clock
        self.scheduler = StandingScheduler(tasks, store)
        self.errors = 0
        self.last_error = ''
        self._stop = False
        self._thread = threading.Thread(target=self._run, name='standing_tasks', daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to stop after its current batch, wait for it; True when it ended."""
        with self.store.condition:
            self._stop = True
            self.store.condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next_batch(self) -> Batch | None:
        with self.store.condition:
            while not (self._stop or self.store.closed):
                batches = self.scheduler.due(self.clock())
                if batches:
                    # One batch at a time, then look again: the next camera's newest frame may
                    # have changed while this one was answered.
                    self.scheduler.consume(batches[0], self.clock())
                    return batches[0]
                self.store.condition.wait(self.scheduler.wait_time(self.clock()))
            return None

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self.answer(batch)
            except Exception as exc:  # the worker must outlive any bad frame
                self.errors += 1
                self.last_error = f'{type(exc).__name__}: {exc}'
                if self.on_error is not None:
                    self.on_error(batch, exc)
