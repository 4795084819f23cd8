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
The ~/teach action: calibrate a new task inside the running node, with the model it holds.

The goal names a task (question, labels) and a labelled set under ``data_dir`` (by default the
one ``~/record`` wrote for the task). The calibration (``superneuron_ros.runtime.teach``, the
function ``superneuron calibrate`` runs) goes on in a thread of its own; every capture batch is
one ``ModelSlot.run`` call, so the inference worker's answers interleave between batches. The
execute callback is a coroutine: it awaits a future that the thread resolves at each progress
step (waking the executor, as the worker does for Ask), publishes feedback, and never blocks the
single-threaded executor. The profile is written to ``<data_dir>/profiles/<task>`` and loaded at
once (:meth:`SuperneuronNode.add_taught_profile`).

One teach at a time: a goal arriving while one runs, or while the node is not active, is
rejected (ROS 2 actions carry no reason with a rejection: the node logs it). A cancel request
stops the thread at the next batch or search layer; nothing is written.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path
import threading
import time
from typing import Any, Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.task import Future
from superneuron_interfaces.action import Teach
from superneuron_ros.errors import SuperneuronError
from superneuron_ros.node.recording import inside_data_dir

PROFILES_DIR, DATASETS_DIR = 'profiles', 'datasets'  # under data_dir
JOIN_TIMEOUT_S = 30.0  # how long stopping waits for a teach thread to end
# A goal's result goes out after its execute callback returns: a shutting-down node keeps
# spinning this long after the last goal ended, so that the client gets it.
RESULT_GRACE_S = 0.5


@dataclass
class TeachJob:
    """One running teach: what the thread reports and how the coroutine waits for it."""

    task: str
    wake: Callable[[], None]
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: Any = None  # the newest core TeachProgress
    outcome: Any = None  # the core TeachOutcome once done
    error: Exception | None = None
    done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _future: Future | None = None
    _pending: bool = False

    def report(self, progress: Any = None, outcome: Any = None,
               error: Exception | None = None, done: bool = False) -> None:
        """Record a progress step or the end (teach thread); resolve the awaited future."""
        with self._lock:
            if progress is not None:
                self.progress = progress
            if done:
                self.outcome, self.error, self.done = outcome, error, True
            self._pending = True
            future, self._future = self._future, None
        if future is not None:
            future.set_result(None)
            self.wake()

    def next_event(self) -> Future:
        """Return a future done at the next report (done at once if one is pending)."""
        future = Future()
        with self._lock:
            if self._pending or self.done:
                self._pending = False
                future.set_result(None)
            else:
                self._future = future
        return future


def _feedback(job: TeachJob) -> Teach.Feedback:
    state = job.progress
    msg = Teach.Feedback(elapsed_s=time.monotonic() - job.started)
    if state is not None:
        msg.stage = state.stage
        msg.images_captured, msg.images_total = state.images_done, state.images_total
        msg.layers_total = state.layers_total
        msg.search_steps_done, msg.search_steps_total = state.steps_done, state.steps_total
    return msg


class Teaching:
    """The ~/teach action server of a SuperneuronNode (see the module docstring)."""

    def __init__(self, node: Any, active: Callable[[], bool], wake: Callable[[], None],
                 callback_group: Any = None) -> None:
        """Create ~/teach on `node`; goals are accepted only while `active()`."""
        self.node = node
        self.active = active
        self.wake = wake
        self.job: TeachJob | None = None
        self._reserved = False  # a goal accepted and not finished (one at a time)
        self._stopping = False
        self._finished = float('-inf')  # monotonic time the last goal ended
        self._thread: threading.Thread | None = None
        self.server = ActionServer(node, Teach, '~/teach', execute_callback=self._execute,
                                   goal_callback=self._on_goal,
                                   cancel_callback=self._on_cancel,
                                   callback_group=callback_group)

    def _on_goal(self, goal: Teach.Goal) -> GoalResponse:
        reason = ''
        if self._stopping:
            reason = 'the node is shutting down'
        elif not self.active():
            reason = 'the node is not active; activate it, then teach'
        elif self._reserved:
            running = self.job.task if self.job is not None else goal.task
            reason = (f'a teach is running (task {running!r}); wait for its result or cancel '
                      'it, then teach again')
        if reason:
            self.node.get_logger().warning(f'teach goal for task {goal.task!r} rejected: '
                                           f'{reason}')
            return GoalResponse.REJECT
        self._reserved = True
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        job = self.job
        if job is not None:
            job.cancel.set()
        return CancelResponse.ACCEPT

    def _work(self, job: TeachJob, goal: Teach.Goal, dataset: Path, target: Path) -> None:
        from superneuron_ros.runtime.teach import load_teach_set, teach
        try:
            task, examples = load_teach_set(dataset, goal.task, goal.question, list(goal.labels))
            outcome = teach(self.node.model.run, task, examples, target,
                            max_exit_layer=goal.max_exit_layer, readout=goal.readout,
                            progress=lambda state: job.report(progress=state),
                            cancelled=job.cancel.is_set)
        except Exception as exc:  # every failure becomes the goal's error; nothing is lost
            job.report(error=exc, done=True)
        else:
            job.report(outcome=outcome, done=True)

    async def _execute(self, goal_handle: Any) -> Teach.Result:
        goal = goal_handle.request
        job = TeachJob(goal.task, self.wake)
        result = Teach.Result(exit_layer=-1, cv_accuracy=math.nan, cv_accuracy_std=math.nan,
                              model_accuracy=math.nan)
        log = self.node.get_logger()
        try:
            data_dir = self.node.settings.data_dir
            try:
                dataset = inside_data_dir(data_dir, goal.dataset, f'{DATASETS_DIR}/{goal.task}')
                target = inside_data_dir(data_dir, f'{PROFILES_DIR}/{goal.task}', '')
            except SuperneuronError as exc:
                return self._fail(goal_handle, result, job, exc)
            log.info(f'teaching {goal.task!r} from {dataset} into {target}')
            self.job = job
            self._thread = threading.Thread(target=self._work, args=(job, goal, dataset, target),
                                            name='teach', daemon=True)
            self._thread.start()
            while True:
                await job.next_event()
                if job.done:
                    break
                goal_handle.publish_feedback(_feedback(job))
            self._thread.join()
            if job.error is not None:
                return self._fail(goal_handle, result, job, job.error)
            outcome = job.outcome
            try:
                self.node.add_taught_profile(str(outcome.profile_path))
            except SuperneuronError as exc:
                return self._fail(goal_handle, result, job, SuperneuronError(
                    f'the profile was written to {outcome.profile_path} but not loaded: {exc}'))
            result.success = True
            result.exit_layer = outcome.exit_layer
            result.cv_accuracy, result.cv_accuracy_std = outcome.cv_accuracy, outcome.cv_std
            result.cv_protocol, result.num_examples = outcome.protocol, outcome.num_examples
            result.model_accuracy = outcome.model_accuracy
            result.model_accuracy_note = outcome.model_accuracy_note
            result.profile_path = str(outcome.profile_path)
            result.seconds = time.monotonic() - job.started
            goal_handle.succeed()
            log.info(f'taught {goal.task!r} in {result.seconds:.1f} s: exit layer '
                     f'{result.exit_layer}, cross-validated accuracy {result.cv_accuracy:.3f} '
                     f'+- {result.cv_accuracy_std:.3f} ({result.cv_protocol}, '
                     f'{result.num_examples} examples); loaded from {result.profile_path}')
            return result
        finally:
            self.job = None
            self._reserved = False
            self._finished = time.monotonic()

    def _fail(self, goal_handle: Any, result: Teach.Result, job: TeachJob,
              error: Exception) -> Teach.Result:
        from superneuron_ros.method.calibration_options import CalibrationCancelled
        kind = '' if isinstance(error, SuperneuronError) else f'{type(error).__name__}: '
        result.error = f'{kind}{error}'
        if self._stopping and isinstance(error, CalibrationCancelled):
            result.error = 'the node is shutting down; the teach was stopped and nothing written'
        result.seconds = time.monotonic() - job.started
        if isinstance(error, CalibrationCancelled) and goal_handle.is_cancel_requested:
            goal_handle.canceled()
            self.node.get_logger().info(f'teach of {job.task!r} cancelled; nothing written')
        else:
            goal_handle.abort()
            self.node.get_logger().error(f'teach of {job.task!r} failed: {result.error}')
        return result

    @property
    def idle(self) -> bool:
        """Whether no goal is running, and the last one ended RESULT_GRACE_S ago (its result)."""
        return not self._reserved and time.monotonic() - self._finished >= RESULT_GRACE_S

    def cancel(self) -> None:
        """Stop a running teach at its next step and refuse new goals (the node shuts down)."""
        self._stopping = True
        job = self.job
        if job is not None:
            job.cancel.set()

    def stop(self) -> None:
        """Cancel a running teach and wait for its thread to end."""
        self.cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)

    def destroy(self) -> None:
        """Destroy the action server (rclpy's destroy_node does not)."""
        self.stop()
        self.server.destroy()
