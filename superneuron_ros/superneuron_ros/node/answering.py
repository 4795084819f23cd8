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
Answering: Ask requests become worker jobs, outcomes become responses and standing answers.

Bad input never raises out of here: every problem becomes ``success=False`` with an error that
says what to do, and the next request is answered as usual. Everything that can be checked
without decoding pixels (tasks, camera, frame age, image size from its header) is checked when
the call arrives, so a bad call is refused at once and never waits in the queue.
"""

import time
from typing import Any, Callable, Mapping

from rclpy.task import Future
from superneuron_ros.errors import ImageError, SuperneuronError, UnknownTaskError
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.image_conversion import check_msg
from superneuron_ros.node.messages import (answer_msg, fail_ask_response, fill_ask_response,
                                           task_info_msg)
from superneuron_ros.node.model import ModelNotLoadedError, ModelSlot
from superneuron_ros.node.params import NodeSettings
from superneuron_ros.node.standing import Batch
from superneuron_ros.node.stats import ASK_PREFIX, REQUEST_SOURCE, StatsBook
from superneuron_ros.node.worker import InferenceWorker, Job, Outcome


class Answerer:
    """Turns requests into jobs and outcomes into messages, recording statistics."""

    def __init__(self, model: ModelSlot, stats: StatsBook, settings: Callable[[], NodeSettings],
                 logger: Any, clock: Callable[[], float] = time.monotonic,
                 topics: Mapping[str, str] | None = None) -> None:
        """
        Answer with `model`; `settings()` returns the current settings.

        `topics` maps camera names to their resolved topics, for error messages.
        """
        self.topics = topics if topics is not None else {}
        self.model = model
        self.store = FrameStore(())
        self.stats = stats
        self.settings = settings
        self.logger = logger
        self.clock = clock

    def _check_tasks(self, tasks: list[str]) -> None:
        if not self.model.loaded:
            raise ModelNotLoadedError('no model is loaded; configure and activate the node (its '
                                      'diagnostics say why loading failed)')
        loaded = sorted(self.model.tasks)
        if not tasks or not all(tasks):
            raise UnknownTaskError(f'the request names no task (or an empty one); set tasks to '
                                   f'one or more of {loaded} (~/list_tasks lists them)')
        unknown = [task for task in tasks if task not in loaded]
        if unknown:
            raise UnknownTaskError(f'unknown task(s) {unknown}; loaded tasks are {loaded} '
                                   '(~/list_tasks lists them)')
        repeated = sorted({task for task in tasks if tasks.count(task) > 1})
        if repeated:
            raise UnknownTaskError(f'tasks {repeated} are asked more than once; ask each once')

    def frame(self, request: Any, settings: NodeSettings, now: float) -> Any:
        """Return the camera frame a request names (ImageError: unknown camera, none, stale)."""
        camera = request.camera or settings.resolved_default_camera
        if camera not in self.store.cameras:
            raise ImageError(f'unknown camera {camera!r}; cameras are '
                             f'{list(self.store.cameras)} (or send an image in the request)')
        frame = self.store.latest(camera)
        if frame is None:
            topic = self.topics.get(camera) or {c.name: c.topic for c in settings.cameras}.get(
                camera, '?')
            raise ImageError(f'no frame received yet from camera {camera!r} on topic {topic}; '
                             'check that the camera publishes (ros2 topic hz)')
        if request.max_age < 0:
            raise ImageError(f'max_age is {request.max_age}; give a positive age in seconds, '
                             'or 0 for the max_image_age parameter')
        max_age = request.max_age if request.max_age > 0 else settings.max_image_age
        if max_age > 0 and frame.age(now) > max_age:
            raise ImageError(f'the newest frame of camera {camera!r} is {frame.age(now):.2f} s '
                             f'old, more than max_age {max_age:g} s; check the camera, or allow '
                             'older frames with max_age')
        return frame

    def prepare(self, request: Any) -> Job:
        """Check an Ask request and return its job; raise SuperneuronError when it is bad."""
        now = self.clock()
        tasks = [str(task) for task in request.tasks]
        self._check_tasks(tasks)
        settings = self.settings()
        if len(request.image.data) > 0:
            msg, key, source = request.image, None, REQUEST_SOURCE
        else:
            frame = self.frame(request, settings, now)
            msg, key, source = frame.msg, (frame.camera, frame.seq), ASK_PREFIX + frame.camera
        check_msg(msg, settings.max_image_pixels, settings.max_aspect_ratio)
        return Job(tuple(tasks), msg, key, source, now)

    async def ask(self, request: Any, response: Any, worker: InferenceWorker,
                  refusal: tuple[str, str] = ('', ''),
                  wake: Callable[[], None] = lambda: None) -> Any:
        """
        Answer one Ask call: check it, queue it on `worker`, await the answer; never raises.

        `refusal` (reason, message) refuses the call at once (the node is not active or shuts
        down). `wake()` is called from the worker thread once the answer is ready, so that the
        executor resumes this coroutine.
        """
        tasks = list(request.tasks)
        if refusal[0]:
            return self.refuse(response, tasks, refusal[1], refusal[0])
        try:
            job = self.prepare(request)
        except SuperneuronError as exc:
            return self.refuse(response, tasks, str(exc))
        future = Future()

        def finish(outcome: Outcome) -> None:
            future.set_result(outcome)
            wake()
        job.finish = finish
        reason = worker.submit(job)
        if reason:
            return self.refuse(response, tasks, f'the node is {reason} ('
                               f'{self.settings().max_queue} calls queued, max_queue); retry '
                               'later', reason)
        outcome = await future
        return self.respond(response, job, outcome)

    def refuse(self, response: Any, tasks: Any, error: str, refusal: str = '') -> Any:
        """Fill a failed response and log why."""
        self.logger.warning(f'ask {list(tasks)} {"refused" if refusal else "failed"}: {error}',
                            throttle_duration_sec=1.0)
        return fail_ask_response(response, error, refusal)

    def respond(self, response: Any, job: Job, outcome: Outcome) -> Any:
        """Fill the response of `job` from the worker's outcome and record its statistics."""
        if outcome.error or outcome.refusal:
            return self.refuse(response, job.tasks, outcome.error, outcome.refusal)
        total_ms = 1e3 * (outcome.done - job.received)
        answers = []
        for task in job.tasks:
            answers.append(answer_msg(outcome.predictions[task], task, job.msg.header, total_ms))
            self._record(task, job.source, outcome, total_ms)
        return fill_ask_response(response, answers)

    def _record(self, task: str, source: str, outcome: Outcome, total_ms: float) -> None:
        self.stats.record_answer(task, source, outcome.done, outcome.preprocess_ms,
                                 outcome.vision_ms, outcome.decoder_ms, outcome.classify_ms,
                                 total_ms, outcome.layers_run)

    def list_tasks(self, request: Any, response: Any) -> Any:
        """Fill a ListTasks response with every loaded task."""
        response.tasks = [task_info_msg(info) for info in self.model.tasks.values()]
        return response

    def publish_batch(self, batch: Batch, outcome: Outcome,
                      publish: Callable[[str, str, Any, bool | None], None]) -> None:
        """
        Publish the standing answers of one batch, or count its frame as dropped.

        `publish(task, camera, answer_msg, yes)` sends the Answer and, for yes/no tasks, yes as a
        bool.
        """
        frame, camera = batch.frame, batch.frame.camera
        for task, skipped in zip(batch.tasks, batch.dropped):
            self.stats.record_dropped(task.task, camera, skipped)
        if outcome.error:
            for task in batch.tasks:
                self.stats.record_dropped(task.task, camera)
            if not outcome.refusal:  # a stale frame is only counted
                self.logger.error(f'standing tasks {[t.task for t in batch.tasks]} on camera '
                                  f'{camera} failed: {outcome.error}', throttle_duration_sec=5.0)
            return
        infos = self.model.tasks
        total_ms = 1e3 * (outcome.done - frame.received)
        for task in batch.tasks:
            name = task.task
            prediction = outcome.predictions[name]
            yes_index = infos[name].yes_index if name in infos else None
            yes = None if yes_index is None else int(prediction.label_index) == yes_index
            publish(name, camera, answer_msg(prediction, name, frame.msg.header, total_ms), yes)
            self._record(name, camera, outcome, total_ms)
