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

"""Build superneuron_interfaces messages: Answer, Ask response, TaskInfo, LatencyStats."""

from typing import Any

from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from superneuron_interfaces.msg import Answer, LatencyStats, TaskInfo
from superneuron_interfaces.srv import Ask
from superneuron_ros.node.stats import AnswerStats


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def answer_msg(prediction: Any, task: str, header: Header, latency_ms: float) -> Answer:
    """Build an Answer from a core Prediction, with the source image's header."""
    return Answer(header=header, task=task, label=str(prediction.label),
                  label_index=int(prediction.label_index),
                  labels=[str(label) for label in prediction.labels],
                  scores=_floats(prediction.scores), confidence=float(prediction.confidence),
                  exit_layer=int(prediction.exit_layer), latency_ms=float(latency_ms))


def fill_ask_response(response: Ask.Response, answers: list[Answer]) -> Ask.Response:
    """Fill a successful Ask response with one Answer per task asked."""
    response.success = True
    response.error = ''
    response.refusal = ''
    response.answers = answers
    return response


def fail_ask_response(response: Ask.Response, error: str, refusal: str = '') -> Ask.Response:
    """Fill an Ask response that reports `error` (and `refusal` when refused before any work)."""
    response.success = False
    response.error = error
    response.refusal = refusal
    response.answers = []
    return response


def task_info_msg(info: Any) -> TaskInfo:
    """Build a TaskInfo message from the core's TaskInfo."""
    return TaskInfo(name=info.name, question=info.question,
                    labels=[str(label) for label in info.labels], exit_layer=int(info.exit_layer),
                    num_neurons=int(info.num_neurons),
                    calibration_accuracy=float(info.calibration_accuracy))


def latency_msg(stats: AnswerStats, node: str, stamp: Time, frame_id: str) -> LatencyStats:
    """Build a LatencyStats message from one (task, camera) snapshot."""
    msg = LatencyStats(node=node, task=stats.task, camera=stats.camera,
                       preprocess_ms=float(stats.preprocess_ms), vision_ms=float(stats.vision_ms),
                       decoder_ms=float(stats.decoder_ms), classify_ms=float(stats.classify_ms),
                       total_ms=float(stats.total_ms), p50_ms=float(stats.p50_ms),
                       p95_ms=float(stats.p95_ms),
                       answers_per_second=float(stats.answers_per_second),
                       mean_layers_run=float(stats.mean_layers_run),
                       dropped_frames=int(stats.dropped_frames),
                       answered_frames=int(stats.answered_frames))
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg
