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
The superneuron lifecycle node: cameras in, categorical answers out.

configure loads the profiles and the model truncated at their deepest exit layer; activate
subscribes to the cameras and creates ~/answers/<task>[/<camera>][/yes] and ~/latency, and
starts the standing tasks; deactivate removes them; cleanup frees the model. ~/ask,
~/list_tasks and /diagnostics exist in every state: an Ask while the node is not active is
refused at once as 'inactive', and a failed configure is visible as an ERROR status.

One inference worker (worker.py) runs every model call; no ROS callback waits for it. ~/ask is
an async callback that queues a job and awaits its future, so the executor keeps taking frames
and calls while the model runs (see docs/architecture.md, "The node's threads").
"""

import copy
from dataclasses import replace
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, qos_profile_services_default
from sensor_msgs.msg import CompressedImage, Image
from superneuron_interfaces.msg import LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks, Record
from superneuron_ros.errors import ProfileError, SuperneuronError
from superneuron_ros.node.annotated import AnnotatedImages
from superneuron_ros.node.answering import Answerer
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.diagnostics import build_diagnostics
from superneuron_ros.node.live_profiles import standing_name, validate_change, with_profile
from superneuron_ros.node.messages import latency_msg
from superneuron_ros.node.model import load_runtime, ModelSlot
from superneuron_ros.node.outputs import AnswerTopics
from superneuron_ros.node.params import (check_standing_tasks, declare_node_parameters,
                                         NodeSettings, ParameterError, read_settings,
                                         StandingTask, updated_settings)
from superneuron_ros.node.recording import Recorder
from superneuron_ros.node.standing import StandingScheduler
from superneuron_ros.node.stats import ASK_PREFIX, StatsBook
from superneuron_ros.node.teaching import Teaching
from superneuron_ros.node.worker import INACTIVE, InferenceWorker, SHUTTING_DOWN

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
# Many Ask clients may call at once; requests wait in this queue (default depth 10) until taken.
SERVICE_QOS = copy.copy(qos_profile_services_default)
SERVICE_QOS.depth = 100


class SuperneuronNode(LifecycleNode):
    """Answers calibrated categorical questions about camera frames (see the module docstring)."""

    def __init__(self, node_name: str = 'superneuron', loader: Any = load_runtime,
                 **kwargs: Any) -> None:
        """Declare parameters, ~/ask, ~/list_tasks and diagnostics; start the worker."""
        super().__init__(node_name, **kwargs)
        declare_node_parameters(self)
        try:
            self.settings = read_settings(self)
        except ParameterError as exc:  # reported by configure, which fails with it
            self.get_logger().error(str(exc))
            self.settings = NodeSettings(autostart=self.get_parameter('autostart').value)
        self.model = ModelSlot(loader)
        self.stats = StatsBook(self.settings.latency_window)
        self.store = FrameStore(())
        self._topics: dict[str, str] = {}  # camera name -> subscribed topic, resolved
        self.answerer = Answerer(self.model, self.stats, lambda: self.settings,
                                 self.get_logger(), topics=self._topics)
        self.worker = InferenceWorker(self.model, lambda: self.settings, self._on_batch,
                                      on_error=self._log_worker_error)
        self.problems: list[str] = []
        self.standing: tuple[StandingTask, ...] = ()
        self._endpoints: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy, entity)
        self.answer_topics = AnswerTopics(self)
        self._latency_pub = None
        self._annotated: AnnotatedImages | None = None  # ~/<camera>/annotated while active
        self._active = False
        self._shutting_down = False
        self._asks_in_flight = 0  # Ask callbacks not yet returned (executor thread only)
        self._last_ask = float('-inf')  # monotonic time of the newest Ask call or response
        self._endpoint_lock = threading.Lock()  # no publishing on a destroyed publisher
        # Callback groups. With the single-threaded executor of main.py they only matter for
        # ~/ask: its async callback holds its group while it awaits the worker, so the group
        # must be reentrant for calls to overlap. Images and monitoring have their own groups,
        # so that a multi-threaded executor (tests, composition) keeps them apart too.
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._monitor_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Ask, '~/ask', self._on_ask, qos_profile=SERVICE_QOS,
                            callback_group=self._service_group)
        self.create_service(ListTasks, '~/list_tasks', self.answerer.list_tasks,
                            qos_profile=SERVICE_QOS, callback_group=self._service_group)
        self.recorder = Recorder(lambda: self.settings, lambda request: self.answerer.frame(
            request, self.settings, time.monotonic()), lambda: self._active)
        self.create_service(Record, '~/record', self.recorder.handle, qos_profile=SERVICE_QOS,
                            callback_group=self._service_group)
        self.teaching = Teaching(self, lambda: self._active and not self._shutting_down,
                                 self._wake, self._service_group)  # ~/teach
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._monitor_timer = None
        self._start_monitor_timer()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._autostart_thread = None
        self._autostart_timer = None
        if self.settings.autostart:
            self._autostart_timer = self.create_timer(0.01, self._start_autostart)

    # Lifecycle -----------------------------------------------------------------------------

    def _start_autostart(self) -> None:
        # Configure loads the model (seconds to minutes): in a thread of its own, so that the
        # executor answers Ask calls ('inactive'), publishes diagnostics and sees signals.
        self.destroy_timer(self._autostart_timer)
        self._autostart_thread = threading.Thread(target=self._autostart, name='autostart',
                                                  daemon=True)
        self._autostart_thread.start()

    def _autostart(self) -> None:
        if self._shutting_down or self.trigger_configure() != SUCCESS:
            return
        if not self._shutting_down:
            self.trigger_activate()

    def _set_state(self, label: str) -> None:
        self.model.report.lifecycle_state = label

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters and load the profiles and the truncated model."""
        started = time.monotonic()
        self.get_logger().info('configuring: loading the model and profiles')
        try:
            self.settings = read_settings(self)
            self.stats.set_window(self.settings.latency_window)
            self.model.load(self.settings)
            check_standing_tasks(self.settings.standing_tasks, self.model.tasks)
        except Exception as exc:
            self.model.release()  # a model loaded before a failing check is freed again
            self.model.mark_failed(exc)  # also parameter errors raised before loading
            kind = '' if isinstance(exc, SuperneuronError) else f'{type(exc).__name__}: '
            self.get_logger().error(f'configure failed: {kind}{exc}')
            return FAILURE
        report = self.model.report
        self.get_logger().info(
            f'configured in {time.monotonic() - started:.1f} s: tasks {list(report.tasks)}, '
            f'exit layer {report.exit_layer}, {report.device}, {report.quantization}; '
            f'self-test: {report.selftest_message}')
        self._set_state('inactive')
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the cameras, create the publishers, start standing tasks."""
        try:
            self._create_endpoints()
        except Exception as exc:
            self.get_logger().error(f'activate failed: {type(exc).__name__}: {exc}')
            self._destroy_endpoints()
            return FAILURE
        self._active = True
        self._set_state('active')
        self.get_logger().info(f'active: cameras {list(self.settings.camera_names)}, standing '
                               f'tasks {[standing_name(t) for t in self.standing]}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop standing tasks, refuse queued calls, remove subscriptions and publishers."""
        self._destroy_endpoints()
        self._set_state('inactive')
        self.get_logger().info('deactivated: cameras unsubscribed, standing tasks stopped; '
                               '~/ask refuses calls as inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model's memory."""
        self.model.release()
        self._set_state('unconfigured')
        self.get_logger().info('cleaned up: model released')
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release endpoints and model."""
        self._destroy_endpoints()
        self.model.release()
        self._set_state('finalized')
        self.get_logger().info('shut down: endpoints removed, model released')
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything and go back to unconfigured."""
        self._destroy_endpoints()
        self.model.release()
        self._set_state('unconfigured')
        self.get_logger().error('error processing: endpoints removed, model released')
        return SUCCESS

    def begin_shutdown(self) -> None:
        """Stop accepting calls; refuse what is queued; the running answer still goes out."""
        if not self._shutting_down:
            self._shutting_down = True
            refused = self.worker.begin_shutdown()
            self.teaching.cancel()
            self.get_logger().info(f'shutting down: {refused} queued call(s) refused')

    def drained(self, quiet_s: float = 0.0) -> bool:
        """
        Whether every Ask call received so far has got its response.

        With `quiet_s`, also that no call arrived and no response went out for that many
        seconds: calls already sent before a shutdown are still taken (and refused), and the
        last responses have time to reach their clients, before the node goes.
        """
        return (self.worker.idle and self._asks_in_flight == 0 and self.teaching.idle
                and time.monotonic() - self._last_ask >= quiet_s)

    def release(self) -> None:
        """Stop the worker, remove endpoints and free the model (also used at process exit)."""
        self.begin_shutdown()
        self.teaching.stop()
        thread = self._autostart_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # a configure in progress finishes, then activate is skipped
        if not self.worker.stop():
            self.get_logger().warning('the inference worker is still busy after 30 s')
        self._destroy_endpoints()
        self.model.release()

    def destroy_node(self) -> None:
        """Destroy ~/teach (rclpy's destroy_node leaves action servers), then the node."""
        self.teaching.destroy()
        super().destroy_node()

    # Ask -----------------------------------------------------------------------------------

    async def _on_ask(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        self._asks_in_flight += 1
        self._last_ask = time.monotonic()
        try:
            refusal = ('', '')
            if self._shutting_down:
                refusal = (SHUTTING_DOWN, 'the node is shutting down; call another node or '
                           'retry after it restarts')
            elif not self._active:
                refusal = (INACTIVE, 'the node is not active (state '
                           f'{self.model.report.lifecycle_state}); activate it or see its '
                           'diagnostics')
            return await self.answerer.ask(request, response, self.worker, refusal, self._wake)
        finally:
            self._asks_in_flight -= 1
            self._last_ask = time.monotonic()  # the response goes out now

    def _wake(self) -> None:
        """Wake the executor (from the worker thread) so that it sends a ready response."""
        executor = self.executor
        if executor is not None:
            try:
                executor.wake()
            except Exception:  # the executor is being shut down; it replies on its way out
                pass

    # Endpoints -----------------------------------------------------------------------------

    def _create_endpoints(self) -> None:
        settings = self.settings
        self.store = FrameStore(settings.camera_names, on_frame=self.worker.notify)
        self.answerer.store = self.store
        self._topics.clear()
        for camera in settings.cameras:
            msg_type = CompressedImage if camera.transport == 'compressed' else Image
            subscription = self.create_subscription(
                msg_type, camera.topic, lambda msg, name=camera.name: self._on_image(name, msg),
                qos_profile_sensor_data, callback_group=self._image_group)
            self._endpoints.append((self.destroy_subscription, subscription))
            self._topics[camera.name] = subscription.topic_name  # after namespace and remaps
        self._latency_pub = self.create_publisher(LatencyStats, '~/latency', 10)
        self._endpoints.append((self.destroy_publisher, self._latency_pub))
        self._annotated = AnnotatedImages(self, settings.camera_names)  # ~/<camera>/annotated
        self._endpoints += self._annotated.endpoints(self.destroy_publisher)
        self._start_standing(settings.standing_tasks)

    def _destroy_endpoints(self) -> None:
        self.worker.set_standing(None)
        self.standing = ()
        with self._endpoint_lock:
            was_active, self._active = self._active, False
            self.store.close()
            self._latency_pub = None
            self._annotated = None
            endpoints, self._endpoints = self._endpoints, []
            for destroy, entity in endpoints:
                destroy(entity)
        self.answer_topics.clear()
        if was_active and not self._shutting_down:
            self.worker.refuse_queued(INACTIVE, 'the node was deactivated before this call '
                                      'was answered; activate it and call again')

    def _on_image(self, camera: str, msg: Any) -> None:
        now = time.monotonic()
        self.store.put(camera, msg, now)
        self.stats.record_frame(camera, now)

    # Standing tasks ------------------------------------------------------------------------

    def _start_standing(self, tasks: tuple[StandingTask, ...]) -> None:
        loaded = self.model.tasks
        known = tuple(t for t in tasks if t.task in loaded)
        self.problems = [f'standing task {standing_name(t)} is not loaded (loaded: '
                         f'{sorted(loaded)}); fix standing_tasks or profiles'
                         for t in tasks if t.task not in loaded]
        for problem in self.problems:
            self.get_logger().error(problem)
        yes_no = {name for name, info in loaded.items() if info.yes_index is not None}
        for key in self.answer_topics.update(known, yes_no):
            self.stats.forget(*key)
        for task in known:
            self.stats.track(task.task, task.camera)
        self.standing = known
        self.worker.set_standing(StandingScheduler(known, self.store) if known else None)

    def _on_batch(self, batch: Any, outcome: Any) -> None:
        annotated = self._annotated  # None while inactive
        if annotated is None:
            self.answerer.publish_batch(batch, outcome, self.answer_topics.publish)
            return
        annotated.answer_batch(
            batch, lambda b, publish: self.answerer.publish_batch(b, outcome, publish),
            self.answer_topics.publish)

    def _log_worker_error(self, message: str) -> None:
        self.get_logger().error(message, throttle_duration_sec=5.0)

    # Parameters ----------------------------------------------------------------------------

    def _validate_parameters(self, params: list) -> SetParametersResult:
        reason = validate_change(self.settings, params, self.model)  # applies a profiles change
        return SetParametersResult(successful=not reason, reason=reason)

    def add_taught_profile(self, path: str) -> None:
        """Load a new profile folder and append it to the profiles parameter (ProfileError)."""
        entries = with_profile(self.settings.profiles, path)
        result = self.set_parameters([Parameter('profiles', value=entries)])[0]
        if not result.successful:
            raise ProfileError(result.reason)

    def _apply_parameters(self, params: list) -> None:
        old, self.settings = self.settings, updated_settings(self.settings, params)
        self.stats.set_window(self.settings.latency_window)
        if self.settings.diagnostics_period != old.diagnostics_period:
            self._start_monitor_timer()
        if self._active and (self.settings.standing_tasks != old.standing_tasks
                             or self.settings.profiles != old.profiles):
            self._start_standing(self.settings.standing_tasks)
            self.get_logger().info(
                f'standing tasks now {[standing_name(t) for t in self.standing]}')

    # Monitoring ----------------------------------------------------------------------------

    def _start_monitor_timer(self) -> None:
        if self._monitor_timer is not None:
            self.destroy_timer(self._monitor_timer)
        self._monitor_timer = self.create_timer(self.settings.diagnostics_period,
                                                self._publish_monitoring,
                                                callback_group=self._monitor_group)

    def _publish_monitoring(self) -> None:
        now, stamp = time.monotonic(), self.get_clock().now().to_msg()
        answers = self.stats.answers(now)
        report = self.model.report
        report.problems = list(self.problems) if self._active else []
        cameras = [(replace(spec, topic=self._topics.get(spec.name, spec.topic)),
                    self.stats.camera(spec.name, now)) for spec in self.settings.cameras]
        self._diagnostics_pub.publish(build_diagnostics(
            self.get_fully_qualified_name(), stamp, report, cameras, self._active,
            self.settings.max_image_age, answers, self.worker.errors, self.worker.last_error))
        with self._endpoint_lock:
            if self._latency_pub is None:
                return
            for stats in self.stats.answers(now, recent_only=True):
                camera = stats.camera.removeprefix(ASK_PREFIX)
                frame = self.store.latest(camera) if camera in self.store.cameras else None
                frame_id = frame.msg.header.frame_id if frame is not None else ''
                self._latency_pub.publish(latency_msg(
                    stats, self.get_fully_qualified_name(), stamp, frame_id))
