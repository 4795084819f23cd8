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
The inference worker: the one thread that runs the model, fed by a bounded queue.

ROS callbacks never wait for inference. An Ask callback hands a :class:`Job` to
:meth:`InferenceWorker.submit` (refused at once when the queue is full or the worker stops) and
the worker calls ``job.finish(outcome)`` when the answer is ready. Standing tasks come from the
:class:`~superneuron_ros.node.standing.StandingScheduler`, which the worker consults whenever a
frame arrives. Ask calls about the same camera frame, and standing tasks due on that frame, are
answered together in one runtime call (one vision pass). Asks and standing batches take turns so
that neither starves the other.
"""

from collections import deque
from dataclasses import dataclass, field
import threading
import time
from typing import Any, Callable, Sequence

from superneuron_ros.errors import SuperneuronError
from superneuron_ros.node.image_conversion import msg_to_rgb
from superneuron_ros.node.model import ModelSlot
from superneuron_ros.node.params import NodeSettings
from superneuron_ros.node.standing import Batch, StandingScheduler

BUSY, INACTIVE, SHUTTING_DOWN = 'busy', 'inactive', 'shutting down'


@dataclass(frozen=True)
class Outcome:
    """What one runtime call gave: predictions by task name, or an error; with timings."""

    predictions: dict = field(default_factory=dict)  # task name -> core Prediction
    error: str = ''  # non-empty: nothing was answered, and this says why
    refusal: str = ''  # '' or BUSY, INACTIVE, SHUTTING_DOWN: refused before any work
    preprocess_ms: float = 0.0  # conversion plus the engine's preprocessing
    vision_ms: float = 0.0
    decoder_ms: float = 0.0
    classify_ms: float = 0.0
    layers_run: float = float('nan')  # decoder layers the runtime ran; NaN when no answer
    done: float = 0.0  # monotonic seconds when the answer was ready


@dataclass
class Job:
    """One Ask call waiting for the worker."""

    tasks: tuple[str, ...]
    msg: Any  # sensor_msgs Image or CompressedImage to answer about
    frame_key: tuple | None  # (camera, seq) of a camera frame; None for a request image
    source: str  # statistics series: 'ask:<camera>' or 'ask:request'
    received: float  # monotonic seconds when the call arrived
    finish: Callable[[Outcome], None] = lambda outcome: None


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


class InferenceWorker:
    """Owns every model call; see the module docstring. Thread-safe."""

    def __init__(self, model: ModelSlot, settings: Callable[[], NodeSettings],
                 on_batch: Callable[[Batch, Outcome], None],
                 on_error: Callable[[str], None] = lambda message: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """
        Answer with `model`; `settings()` gives the current limits (max_queue, image sizes).

        `on_batch(batch, outcome)` publishes a standing batch's answers (or its error);
        `on_error(message)` logs a failure nobody else will see.
        """
        self.model = model
        self.settings = settings
        self.on_batch = on_batch
        self.on_error = on_error
        self.clock = clock
        self.errors = 0
        self.last_error = ''
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._scheduler: StandingScheduler | None = None
        self._accepting = True
        self._stopped = False
        self._busy = False
        self._ask_turn = True
        self._thread = threading.Thread(target=self._run, name='inference', daemon=True)
        self._thread.start()

    # Feeding -------------------------------------------------------------------------------

    def submit(self, job: Job) -> str:
        """Queue `job`; return '' when accepted, else the refusal (BUSY or SHUTTING_DOWN)."""
        with self._cond:
            if not self._accepting:
                return SHUTTING_DOWN
            if len(self._queue) >= self.settings().max_queue:
                return BUSY
            self._queue.append(job)
            self._cond.notify_all()
        return ''

    def notify(self) -> None:
        """Wake the worker: a frame arrived (called by the frame store)."""
        with self._cond:
            self._cond.notify_all()

    def set_standing(self, scheduler: StandingScheduler | None) -> None:
        """Answer the scheduler's standing tasks from now on (None: no standing tasks)."""
        with self._cond:
            self._scheduler = scheduler
            self._cond.notify_all()

    def refuse_queued(self, refusal: str, message: str) -> int:
        """Finish every queued job with `refusal` and `message`; return how many."""
        with self._cond:
            jobs, self._queue = list(self._queue), deque()
        for job in jobs:
            job.finish(Outcome(error=message, refusal=refusal, done=self.clock()))
        return len(jobs)

    def begin_shutdown(self) -> int:
        """Refuse new and queued jobs as shutting down; the running one still finishes."""
        with self._cond:
            self._accepting = False
            self._scheduler = None
        return self.refuse_queued(SHUTTING_DOWN, 'the node is shutting down; this call was '
                                  'not answered')

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or running."""
        with self._cond:
            return not self._queue and not self._busy

    @property
    def queued(self) -> int:
        """Return how many Ask jobs wait."""
        with self._cond:
            return len(self._queue)

    def stop(self, timeout: float = 30.0) -> bool:
        """Refuse what is queued, finish the running call, end the thread; True when it ended."""
        self.begin_shutdown()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # The thread ----------------------------------------------------------------------------

    def _take_same_frame(self, key: tuple | None) -> list[Job]:
        if key is None:
            return []
        same = [job for job in self._queue if job.frame_key == key]
        if same:
            self._queue = deque(job for job in self._queue if job.frame_key != key)
        return same

    def _next(self) -> tuple[list[Job], Batch | None] | None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
            while not self._stopped:
                now = self.clock()
                scheduler = self._scheduler
                batches = scheduler.due(now) if scheduler is not None else []
                if self._queue and (self._ask_turn or not batches):
                    job = self._queue.popleft()
                    jobs = [job] + self._take_same_frame(job.frame_key)
                    batch = next((b for b in batches
                                  if (b.frame.camera, b.frame.seq) == job.frame_key), None)
                    self._ask_turn = False
                elif batches:
                    batch = batches[0]
                    jobs = self._take_same_frame((batch.frame.camera, batch.frame.seq))
                    self._ask_turn = True
                else:
                    self._ask_turn = True
                    self._cond.wait(scheduler.wait_time(now) if scheduler is not None else None)
                    continue
                if batch is not None:
                    scheduler.consume(batch, now)
                self._busy = True
                return jobs, batch
            return None

    def _run(self) -> None:
        while (work := self._next()) is not None:
            jobs, batch = work
            try:
                self._answer(jobs, batch)
            except Exception as exc:  # a bug here must neither kill the thread nor lose calls
                message = f'internal error ({type(exc).__name__}: {exc}); see the node log'
                self.errors += 1
                self.last_error = message
                self.on_error(message)
                for job in jobs:
                    job.finish(Outcome(error=message, done=self.clock()))

    def _answer(self, jobs: list[Job], batch: Batch | None) -> None:
        settings = self.settings()
        start = self.clock()
        if batch is not None and settings.max_image_age > 0 and \
                batch.frame.age(start) > settings.max_image_age:
            self.on_batch(batch, Outcome(error='frame too old', refusal='stale', done=start))
            batch = None
        if not jobs and batch is None:
            return
        msg = jobs[0].msg if jobs else batch.frame.msg
        names = _unique([name for job in jobs for name in job.tasks]
                        + [task.task for task in (batch.tasks if batch is not None else ())])
        outcome = self._run_model(msg, names, settings, start)
        for job in jobs:
            job.finish(outcome)
        if batch is not None:
            if outcome.error:
                self.errors += 1
                self.last_error = outcome.error
            self.on_batch(batch, outcome)

    def _run_model(self, msg: Any, names: list[str], settings: NodeSettings,
                   start: float) -> Outcome:
        try:
            image = msg_to_rgb(msg, settings.max_image_pixels, settings.max_aspect_ratio)
            converted = self.clock()
            result = self.model.answer(image, names)
        except SuperneuronError as exc:
            return Outcome(error=str(exc), done=self.clock())
        except Exception as exc:  # a device failure or a bug must not take the node down
            message = (f'internal error ({type(exc).__name__}: {exc}); see the node log and '
                       'report it')
            self.on_error(message)
            return Outcome(error=message, done=self.clock())
        times = result.times
        return Outcome(
            predictions=dict(zip(names, result.predictions)),
            preprocess_ms=1e3 * (converted - start) + times.preprocess_ms,
            vision_ms=times.vision_ms, decoder_ms=times.decoder_ms,
            classify_ms=times.classify_ms,
            layers_run=float(result.layers_run), done=self.clock())
