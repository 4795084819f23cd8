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
Answering: the ~/ask and ~/list_tasks handlers and the standing-task batch handler.

Bad input never raises out of here: every problem becomes ``success=False`` with an error that
says what to do, and the next request is answered as usual.
"""

import time
from typing import Any, Callable, Mapping

from superneuron_ros.errors import ImageError, SuperneuronError, UnknownTaskError
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.image_conversion import msg_to_rgb
from superneuron_ros.node.messages import (answer_msg, fail_ask_response, fill_ask_response,
                                           task_info_msg)
from superneuron_ros.node.model import ModelNotLoadedError, ModelSlot
from superneuron_ros.node.params import NodeSettings
from superneuron_ros.node.standing import Batch
from superneuron_ros.node.stats import ASK_PREFIX, REQUEST_SOURCE, StatsBook


class Answerer:
    """Turns requests and frames into answers using the model slot, frames and settings."""

    def __init__(self, model: ModelSlot, store: FrameStore, stats: StatsBook,
                 settings: Callable[[], NodeSettings], logger: Any,
                 clock: Callable[[], float] = time.monotonic,
                 topics: Mapping[str, str] | None = None) -> None:
        """
        Answer with `model` on frames of `store`; `settings()` returns the current settings.

        `topics` maps camera names to their resolved topics, for error messages.
        """
        self.topics = topics if topics is not None else {}
        self.model = model
        self.store = store
        self.stats = stats
        self.settings = settings
        self.logger = logger
        self.clock = clock

    def _check_task(self, task: str) -> None:
        if not self.model.loaded:
            raise ModelNotLoadedError('no model is loaded; configure and activate the node (its '
                                      'diagnostics say why loading failed)')
        loaded = sorted(self.model.tasks)
        if not task:
            raise UnknownTaskError(f'the request names no task; set task to one of {loaded} '
                                   '(~/list_tasks lists them)')
        if task not in loaded:
            raise UnknownTaskError(f'unknown task {task!r}; loaded tasks are {loaded} '
                                   '(~/list_tasks lists them)')

    def _frame_image(self, request: Any, settings: NodeSettings, now: float) -> tuple:
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
        return frame.msg, camera

    def ask(self, request: Any, response: Any) -> Any:
        """Answer one Ask request; never raises."""
        start = self.clock()
        try:
            self._check_task(request.task)
            settings = self.settings()
            if len(request.image.data) > 0:
                msg, source = request.image, REQUEST_SOURCE
            else:
                msg, camera = self._frame_image(request, settings, start)
                source = ASK_PREFIX + camera
            image = msg_to_rgb(msg, settings.max_image_pixels)
            converted = self.clock()
            result = self.model.answer(image, [request.task])
        except SuperneuronError as exc:
            self.logger.warning(f'ask {request.task!r} refused: {exc}')
            return fail_ask_response(response, request.task, str(exc),
                                     1e3 * (self.clock() - start))
        except Exception as exc:  # a bug or a device failure must not take the node down
            self.logger.error(f'ask {request.task!r} failed: {type(exc).__name__}: {exc}')
            return fail_ask_response(
                response, request.task, f'internal error ({type(exc).__name__}: {exc}); see the '
                'node log and report it', 1e3 * (self.clock() - start))
        done = self.clock()
        times = result.times
        total_ms = 1e3 * (done - start)
        self.stats.record_answer(request.task, source, done,
                                 1e3 * (converted - start) + times.preprocess_ms,
                                 times.vision_ms, times.decoder_ms, times.classify_ms, total_ms)
        return fill_ask_response(response, result.predictions[0], request.task,
                                 msg.header.stamp, total_ms)

    def list_tasks(self, request: Any, response: Any) -> Any:
        """Fill a ListTasks response with every loaded task."""
        response.tasks = [task_info_msg(info) for info in self.model.tasks.values()]
        return response

    def answer_batch(self, batch: Batch, publish: Callable[[str, Any, bool | None], None]
                     ) -> None:
        """
        Answer the due standing tasks of one frame in one runtime call and publish them.

        `publish(task, answer_msg, yes)` sends the Answer and, for yes/no tasks, yes as a bool.
        Frames older than max_image_age are dropped, not answered.
        """
        frame, camera = batch.frame, batch.frame.camera
        for task, skipped in zip(batch.tasks, batch.dropped):
            self.stats.record_dropped(task.task, camera, skipped)
        settings = self.settings()
        start = self.clock()
        if settings.max_image_age > 0 and frame.age(start) > settings.max_image_age:
            for task in batch.tasks:
                self.stats.record_dropped(task.task, camera)
            return
        infos = self.model.tasks
        names = [task.task for task in batch.tasks]
        try:
            image = msg_to_rgb(frame.msg, settings.max_image_pixels)
            converted = self.clock()
            result = self.model.answer(image, names)
        except Exception:
            for name in names:
                self.stats.record_dropped(name, camera)
            raise
        done = self.clock()
        times = result.times
        total_ms = 1e3 * (done - frame.received)
        for name, prediction in zip(names, result.predictions):
            yes_index = infos[name].yes_index
            yes = None if yes_index is None else int(prediction.label_index) == yes_index
            publish(name, answer_msg(prediction, name, frame.msg.header, total_ms), yes)
            self.stats.record_answer(name, camera, done,
                                     1e3 * (converted - start) + times.preprocess_ms,
                                     times.vision_ms, times.decoder_ms, times.classify_ms,
                                     total_ms)
