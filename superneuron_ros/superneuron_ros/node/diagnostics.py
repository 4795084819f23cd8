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
Build the node's /diagnostics message (for rqt_robot_monitor) from a snapshot of its state.

Status names are ``"<fully qualified node name>: <part>"`` (``/robot1/superneuron: model``) and
every ``hardware_id`` is the fully qualified node name, so that two instances or two robots on
one /diagnostics stay apart; the device and the camera topics are in the values. The model status
is ERROR when loading failed; a camera is WARN when it has no frame yet or its newest frame is
older than max_image_age.
"""

from dataclasses import dataclass, field
import math
from typing import Sequence

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from superneuron_ros.node.compat import ros_distro
from superneuron_ros.node.params import CameraSpec
from superneuron_ros.node.stats import AnswerStats, CameraStats

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)


@dataclass
class ModelReport:
    """What the node knows about its model, for the model, device and self-test statuses."""

    lifecycle_state: str = 'unconfigured'
    phase: str = 'not loaded'  # not loaded, loading, ready, failed, released
    error: str = ''
    error_kind: str = ''  # class name of the loading error
    model_path: str = ''
    quantization: str = ''
    device: str = ''
    dtype: str = ''
    exit_layer: int = -1
    tasks: tuple[str, ...] = ()
    selftest_ok: bool | None = None
    selftest_message: str = ''
    problems: list[str] = field(default_factory=list)  # configuration warnings
    overrides: tuple[str, ...] = ()  # start-up checks the user overrode (runtime warnings)


def _status(name: str, level: bytes, message: str, hardware_id: str,
            values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])


def _ms(value: float) -> str:
    return 'n/a' if math.isnan(value) else f'{value:.1f}'


def model_statuses(node: str, model: ModelReport) -> list[DiagnosticStatus]:
    """Return the model, device and quantization self-test statuses of node `node`."""
    hw = node
    values = {'lifecycle state': model.lifecycle_state, 'model state': model.phase,
              'model_path': model.model_path, 'quantization': model.quantization,
              'device': model.device, 'dtype': model.dtype, 'exit layer': model.exit_layer,
              'ros distro': ros_distro(),
              'tasks': ', '.join(model.tasks)}
    if model.phase == 'failed':
        level, message = ERROR, f'model failed to load: {model.error}'
        values['error'] = model.error
    elif model.problems or model.overrides:
        level, message = WARN, '; '.join(list(model.overrides) + list(model.problems))
    elif model.phase == 'ready':
        level, message = OK, (f'{model.lifecycle_state}: {len(model.tasks)} task(s), exit '
                              f'layer {model.exit_layer}')
    else:
        level, message = OK, f'{model.lifecycle_state}: model {model.phase}'
    statuses = [_status(f'{node}: model', level, message, hw, values)]
    if model.phase == 'ready':
        statuses.append(_status(f'{node}: device', OK, model.device, hw,
                                {'device': model.device, 'dtype': model.dtype}))
    elif model.phase == 'failed' and model.error_kind == 'DeviceError':
        statuses.append(_status(f'{node}: device', ERROR, model.error, hw,
                                {'device': model.device}))
    else:
        statuses.append(_status(f'{node}: device', OK, 'no model loaded', hw,
                                {'device': model.device}))
    if model.selftest_ok is not None:
        level = OK if model.selftest_ok else ERROR
        message = model.selftest_message
    elif model.phase == 'failed' and model.error_kind == 'QuantizationError':
        level, message = ERROR, model.error
    else:
        level, message = OK, 'not run (no model loaded)'
    statuses.append(_status(f'{node}: quantization self-test', level, message, hw,
                            {'quantization': model.quantization}))
    return statuses


def camera_status(node: str, camera: CameraSpec, stats: CameraStats, active: bool,
                  max_age: float) -> DiagnosticStatus:
    """Return one camera's status: frame rate and age, WARN when it has no fresh frame."""
    age = 'n/a' if stats.age_s is None else f'{stats.age_s:.2f}'
    values = {'topic': camera.topic, 'transport': camera.transport,
              'frames received': stats.received_frames,
              'frame rate (Hz)': f'{stats.frames_per_second:.1f}', 'newest frame age (s)': age}
    name = f'{node}: camera {camera.name}'
    if not active:
        return _status(name, OK, 'not subscribed (node not active)', node, values)
    if stats.age_s is None:
        return _status(name, WARN, f'no frame received yet on {camera.topic}', node, values)
    if max_age > 0 and stats.age_s > max_age:
        return _status(name, WARN, f'stale: newest frame is {age} s old (max_image_age '
                       f'{max_age:g} s)', node, values)
    return _status(name, OK, f'{stats.frames_per_second:.1f} Hz, newest frame {age} s old',
                   node, values)


def answer_statuses(node: str, answers: Sequence[AnswerStats], worker_errors: int,
                    last_error: str) -> list[DiagnosticStatus]:
    """Return the answer-rate and latency statuses over every (task, camera) series."""
    rate_values, latency_values = {}, {}
    for a in answers:
        key = f'{a.task}@{a.camera}'
        rate_values[f'{key} answers/s'] = f'{a.answers_per_second:.2f}'
        rate_values[f'{key} answered'] = a.answered_frames
        rate_values[f'{key} dropped'] = a.dropped_frames
        latency_values[f'{key} last (ms)'] = _ms(a.total_ms)
        latency_values[f'{key} p50 (ms)'] = _ms(a.p50_ms)
        latency_values[f'{key} p95 (ms)'] = _ms(a.p95_ms)
    total_rate = sum(a.answers_per_second for a in answers)
    rate_values['standing task errors'] = worker_errors
    if last_error:
        rate_values['last error'] = last_error
    rate_message = f'{total_rate:.2f} answers/s over {len(answers)} task/camera pair(s)'
    worst = max((a.p95_ms for a in answers if not math.isnan(a.p95_ms)), default=float('nan'))
    return [
        _status(f'{node}: answers', OK, rate_message, node, rate_values),
        _status(f'{node}: latency', OK, f'worst p95 {_ms(worst)} ms', node, latency_values),
    ]


def build_diagnostics(node: str, stamp: Time, model: ModelReport,
                      cameras: Sequence[tuple[CameraSpec, CameraStats]], active: bool,
                      max_age: float, answers: Sequence[AnswerStats], worker_errors: int = 0,
                      last_error: str = '') -> DiagnosticArray:
    """
    Assemble every status of the node into one DiagnosticArray stamped `stamp`.

    `node` is the fully qualified node name (``Node.get_fully_qualified_name()``).
    """
    statuses = model_statuses(node, model)
    statuses += [camera_status(node, spec, stats, active, max_age) for spec, stats in cameras]
    statuses += answer_statuses(node, answers, worker_errors, last_error)
    msg = DiagnosticArray(status=statuses)
    msg.header.stamp = stamp
    return msg
