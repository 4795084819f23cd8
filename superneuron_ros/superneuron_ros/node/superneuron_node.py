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
subscribes to the cameras and creates ~/ask, ~/list_tasks, ~/answers/<task>[/yes] and ~/latency;
deactivate removes them; cleanup frees the model. /diagnostics is published in every state, so a
failed configure is visible as an ERROR status while the node stays up.
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
from rclpy.qos import qos_profile_sensor_data, qos_profile_services_default
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool
from superneuron_interfaces.msg import Answer, LatencyStats
from superneuron_interfaces.srv import Ask, ListTasks
from superneuron_ros.errors import SuperneuronError
from superneuron_ros.node.annotated import AnnotatedImages
from superneuron_ros.node.answering import Answerer
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.diagnostics import build_diagnostics
from superneuron_ros.node.messages import latency_msg
from superneuron_ros.node.model import load_runtime, ModelSlot
from superneuron_ros.node.params import (check_standing_tasks, declare_node_parameters,
                                         NodeSettings, ParameterError, read_settings,
                                         StandingTask, topic_token, updated_settings)
from superneuron_ros.node.standing import StandingWorker
from superneuron_ros.node.stats import ASK_PREFIX, StatsBook

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
# Many Ask clients may call at once; requests wait in this queue (default depth 10) until taken.
SERVICE_QOS = copy.copy(qos_profile_services_default)
SERVICE_QOS.depth = 100


class SuperneuronNode(LifecycleNode):
    """Answers calibrated categorical questions about camera frames (see the module docstring)."""

    def __init__(self, node_name: str = 'superneuron', loader: Any = load_runtime,
                 **kwargs: Any) -> None:
        """Declare parameters and diagnostics; with autostart, configure and activate soon."""
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
        self.answerer = None
        self.worker = None
        self.problems: list[str] = []
        self._endpoints: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy, entity)
        self._answer_pubs: dict[str, tuple[Any, Any]] = {}
        self._latency_pub = None
        self._topics: dict[str, str] = {}  # camera name -> subscribed topic, resolved
        self._active = False
        self._endpoint_lock = threading.Lock()  # monitoring never publishes on a destroyed one
        # Callback groups: image callbacks only store the newest frame, so they share one group;
        # Ask/ListTasks run in a reentrant group (concurrent calls wait on the model lock, not on
        # each other's executor slot); monitoring has its own group so a long inference never
        # delays /diagnostics. Lifecycle and parameter services stay in the default group.
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._monitor_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._monitor_timer = None
        self._start_monitor_timer()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._autostart_timer = None
        if self.settings.autostart:
            self._autostart_timer = self.create_timer(0.01, self._autostart)

    # Lifecycle -----------------------------------------------------------------------------

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def _set_state(self, label: str) -> None:
        self.model.report.lifecycle_state = label

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters and load the profiles and the truncated model."""
        started = time.monotonic()
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
        """Subscribe to the cameras, create the services and publishers, start standing tasks."""
        try:
            self._create_endpoints()
        except Exception as exc:
            self.get_logger().error(f'activate failed: {type(exc).__name__}: {exc}')
            self._destroy_endpoints()
            return FAILURE
        self._active = True
        self._set_state('active')
        self.get_logger().info(f'active: cameras {list(self.settings.camera_names)}, standing '
                               f'tasks {self._standing_names()}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop standing tasks and remove every subscription, service and publisher."""
        self._destroy_endpoints()
        self._set_state('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model's memory."""
        self.model.release()
        self._set_state('unconfigured')
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release endpoints and model."""
        self.release()
        self._set_state('finalized')
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything and go back to unconfigured."""
        self.release()
        self._set_state('unconfigured')
        return SUCCESS

    def release(self) -> None:
        """Stop the worker, remove endpoints and free the model (also used at process exit)."""
        self._destroy_endpoints()
        self.model.release()

    # Endpoints -----------------------------------------------------------------------------

    def _create_endpoints(self) -> None:
        settings = self.settings
        self.store = FrameStore(settings.camera_names)
        self._topics.clear()
        self.answerer = Answerer(self.model, self.store, self.stats, lambda: self.settings,
                                 self.get_logger(), topics=self._topics)
        for camera in settings.cameras:
            msg_type = CompressedImage if camera.transport == 'compressed' else Image
            subscription = self.create_subscription(
                msg_type, camera.topic, lambda msg, name=camera.name: self._on_image(name, msg),
                qos_profile_sensor_data, callback_group=self._image_group)
            self._endpoints.append((self.destroy_subscription, subscription))
            self._topics[camera.name] = subscription.topic_name  # after namespace and remaps
        for srv_type, name, handler in ((Ask, '~/ask', self.answerer.ask),
                                        (ListTasks, '~/list_tasks', self.answerer.list_tasks)):
            self._endpoints.append((self.destroy_service, self.create_service(
                srv_type, name, handler, qos_profile=SERVICE_QOS,
                callback_group=self._service_group)))
        self._latency_pub = self.create_publisher(LatencyStats, '~/latency', 10)
        self._endpoints.append((self.destroy_publisher, self._latency_pub))
        self._annotated = AnnotatedImages(self, settings.camera_names)  # ~/<camera>/annotated
        self._endpoints += self._annotated.endpoints(self.destroy_publisher)
        self._start_standing(settings.standing_tasks)

    def _destroy_endpoints(self) -> None:
        self._stop_standing()
        with self._endpoint_lock:
            self._active = False
            self.store.close()
            self._latency_pub = None
            self._answer_pubs = {}
            endpoints, self._endpoints = self._endpoints, []
            for destroy, entity in endpoints:
                destroy(entity)

    def _on_image(self, camera: str, msg: Any) -> None:
        now = time.monotonic()
        self.store.put(camera, msg, now)
        self.stats.record_frame(camera, now)

    # Standing tasks ------------------------------------------------------------------------

    def _standing_names(self) -> list[str]:
        return [f'{t.task}@{t.camera}' for t in (self.worker.scheduler.tasks if self.worker
                                                 else ())]

    def _start_standing(self, tasks: tuple[StandingTask, ...]) -> None:
        loaded = self.model.tasks
        known = [t for t in tasks if t.task in loaded]
        self.problems = [f'standing task {t.task}@{t.camera} is not loaded (loaded: '
                         f'{sorted(loaded)}); fix standing_tasks or profiles'
                         for t in tasks if t.task not in loaded]
        for problem in self.problems:
            self.get_logger().error(problem)
        for task in known:
            self.stats.track(task.task, task.camera)
            if task.task not in self._answer_pubs:
                token = topic_token(task.task)
                answer_pub = self.create_publisher(Answer, f'~/answers/{token}', 10)
                yes_pub = (self.create_publisher(Bool, f'~/answers/{token}/yes', 10)
                           if loaded[task.task].yes_index is not None else None)
                self._answer_pubs[task.task] = (answer_pub, yes_pub)
                self._endpoints += [(self.destroy_publisher, p) for p in (answer_pub, yes_pub)
                                    if p is not None]
        if known:
            self.worker = StandingWorker(
                self.store, known, lambda batch: self._annotated.answer_batch(
                    batch, self.answerer.answer_batch, self._publish),
                on_error=self._on_standing_error)
            self.worker.start()

    def _stop_standing(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None and not worker.stop():
            self.get_logger().warning('standing-task worker still busy after 30 s; leaving it')

    def _publish(self, task: str, answer: Answer, yes: bool | None) -> None:
        answer_pub, yes_pub = self._answer_pubs[task]
        answer_pub.publish(answer)
        if yes is not None and yes_pub is not None:
            yes_pub.publish(Bool(data=yes))

    def _on_standing_error(self, batch: Any, exc: Exception) -> None:
        self.get_logger().error(
            f'standing tasks {[t.task for t in batch.tasks]} on camera {batch.frame.camera} '
            f'failed: {exc}', throttle_duration_sec=5.0)

    # Parameters ----------------------------------------------------------------------------

    def _validate_parameters(self, params: list) -> SetParametersResult:
        try:
            updated = updated_settings(self.settings, params)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        loaded = self.model.tasks
        unknown = [t.task for t in updated.standing_tasks if loaded and t.task not in loaded]
        if unknown and any(p.name == 'standing_tasks' for p in params):
            return SetParametersResult(successful=False, reason=(
                f'standing_tasks names task(s) {unknown} that are not loaded; loaded tasks are '
                f'{sorted(loaded)}'))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list) -> None:
        old, self.settings = self.settings, updated_settings(self.settings, params)
        self.stats.set_window(self.settings.latency_window)
        if self.settings.diagnostics_period != old.diagnostics_period:
            self._start_monitor_timer()
        if self.settings.standing_tasks != old.standing_tasks and self._active:
            self._stop_standing()
            self._start_standing(self.settings.standing_tasks)
            self.get_logger().info(f'standing tasks now {self._standing_names()}')

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
        worker = self.worker
        cameras = [(replace(spec, topic=self._topics.get(spec.name, spec.topic)),
                    self.stats.camera(spec.name, now)) for spec in self.settings.cameras]
        self._diagnostics_pub.publish(build_diagnostics(
            self.get_fully_qualified_name(), stamp, report, cameras, self._active,
            self.settings.max_image_age,
            answers, worker.errors if worker else 0, worker.last_error if worker else ''))
        with self._endpoint_lock:
            if self._latency_pub is None:
                return
            for stats in answers:
                camera = stats.camera.removeprefix(ASK_PREFIX)
                frame = self.store.latest(camera) if camera in self.store.cameras else None
                frame_id = frame.msg.header.frame_id if frame is not None else ''
                self._latency_pub.publish(latency_msg(
                    stats, self.get_fully_qualified_name(), stamp, frame_id))
