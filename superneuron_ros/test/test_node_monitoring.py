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

"""Tests of latency statistics and of the /diagnostics message built from them."""

import math

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
import pytest
from superneuron_ros.node.diagnostics import build_diagnostics, ModelReport
from superneuron_ros.node.params import CameraSpec
from superneuron_ros.node.stats import RollingWindow, StatsBook

FRONT = CameraSpec('front', '/front/image_raw')


def test_rolling_window_percentiles_and_rate_forget_old_values():
    """Values older than the window are dropped from percentiles and rates."""
    window = RollingWindow(10.0)
    assert math.isnan(window.percentile(0.0, 50)) and window.rate(0.0) == 0.0
    for i in range(100):
        window.add(i * 0.1, float(i))  # 10 per second, values 0..99
    assert window.percentile(9.9, 50) == pytest.approx(49.5)
    assert window.percentile(9.9, 95) == pytest.approx(94.05)
    assert window.rate(9.9) == pytest.approx(100 / 9.9)
    assert window.values(15.0).min() == 50.0  # only the last 5 s remain
    assert window.rate(15.0) == pytest.approx(5.0)
    assert window.rate(40.0) == 0.0


def test_stats_book_tracks_answers_drops_and_frames_per_series():
    """Each (task, camera) series has its own counts; cameras have rate and age."""
    book = StatsBook(window_s=10.0)
    book.track('shape', 'rear')
    for i in range(10):
        book.record_answer('door', 'front', now=1.0 + i * 0.5, preprocess_ms=1.0, vision_ms=2.0,
                           decoder_ms=3.0, classify_ms=0.5, total_ms=10.0 + i)
    book.record_dropped('door', 'front', 3)
    book.record_dropped('door', 'front', 0)
    door, shape = book.answers(now=6.0)
    assert (door.task, door.camera, shape.task) == ('door', 'front', 'shape')
    assert door.answered_frames == 10 and door.dropped_frames == 3
    assert (door.preprocess_ms, door.vision_ms, door.total_ms) == (1.0, 2.0, 19.0)
    assert door.p50_ms == pytest.approx(14.5) and door.p95_ms > door.p50_ms
    assert door.answers_per_second == pytest.approx(2.0)
    assert shape.answered_frames == 0 and math.isnan(shape.p50_ms)
    assert book.camera('front', 1.0).age_s is None
    for i in range(20):
        book.record_frame('front', now=i * 0.1)
    front = book.camera('front', now=2.4)
    assert front.received_frames == 20 and front.age_s == pytest.approx(0.5)
    assert front.frames_per_second == pytest.approx(20 / 2.4)
    assert book.camera('front', now=100.0).age_s == pytest.approx(98.1)


def test_latency_snapshots_skip_silent_series_and_average_layers_run():
    """recent_only drops series with no answer in the window; layers_run is averaged."""
    book = StatsBook(window_s=5.0)
    book.track('shape', 'rear')
    for i, layers in enumerate([2.0, 4.0, float('nan')]):
        book.record_answer('door', 'front', 1.0 + i, 1.0, 2.0, 3.0, 0.5, 10.0, layers)
    book.record_answer('room', 'ask:request', 1.0, 1.0, 2.0, 3.0, 0.5, 10.0)
    assert [(s.task, s.camera) for s in book.answers(4.0)] == [
        ('door', 'front'), ('room', 'ask:request'), ('shape', 'rear')]
    [door, room] = book.answers(4.0, recent_only=True)
    assert door.mean_layers_run == pytest.approx(3.0) and math.isnan(room.mean_layers_run)
    assert [s.task for s in book.answers(8.5, recent_only=True)] == []  # all out of window
    book.forget('door', 'front')
    assert [s.task for s in book.answers(4.0)] == ['room', 'shape']


def _statuses(msg):
    return {status.name: status for status in msg.status}


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_failed_model_is_an_error_and_cameras_are_not_subscribed():
    """A failed load gives ERROR with the reason; inactive cameras are not stale."""
    report = ModelReport(phase='failed', error='model folder /nope does not exist',
                         error_kind='ModelLoadError', model_path='/nope', quantization='nf4')
    book = StatsBook()
    msg = build_diagnostics('/robot1/superneuron', Time(sec=5), report,
                            [(FRONT, book.camera('front', 0.0))], False, 1.0, [])
    statuses = _statuses(msg)
    assert msg.header.stamp.sec == 5
    node = '/robot1/superneuron'
    assert set(statuses) == {f'{node}: {part}' for part in (
        'model', 'device', 'quantization self-test', 'camera front', 'answers', 'latency')}
    assert {status.hardware_id for status in msg.status} == {node}
    model = statuses[f'{node}: model']
    assert model.level == DiagnosticStatus.ERROR and isinstance(model.level, bytes)
    assert '/nope does not exist' in model.message
    assert _values(model)['model_path'] == '/nope'
    assert statuses[f'{node}: camera front'].level == DiagnosticStatus.OK


@pytest.mark.parametrize('kind,part', [('DeviceError', 'device'),
                                       ('QuantizationError', 'quantization self-test')])
def test_device_and_quantization_failures_mark_their_own_status(kind, part):
    """The status matching the error's kind is ERROR too."""
    report = ModelReport(phase='failed', error='boom', error_kind=kind)
    statuses = _statuses(build_diagnostics('n', Time(), report, [], False, 1.0, []))
    assert statuses[f'n: {part}'].level == DiagnosticStatus.ERROR


def test_ready_model_with_fresh_stale_and_silent_cameras():
    """Active cameras are OK when fresh, WARN when stale or silent; self-test shows its result."""
    report = ModelReport(lifecycle_state='active', phase='ready', device='cpu', dtype='float32',
                         quantization='nf4', exit_layer=1, tasks=('door',), selftest_ok=True,
                         selftest_message='nf4 matmul ok')
    book = StatsBook()
    for i in range(10):
        book.record_frame('front', now=i * 0.1)
        book.record_frame('rear', now=i * 0.1)
    rear, side = CameraSpec('rear', '/rear'), CameraSpec('side', '/side')
    book.record_answer('door', 'front', 1.0, 1.0, 2.0, 3.0, 0.5, 12.0)
    cameras = [(FRONT, book.camera('front', 1.2)), (rear, book.camera('rear', 5.0)),
               (side, book.camera('side', 5.0))]
    statuses = _statuses(build_diagnostics('sn', Time(), report, cameras, True, 1.0,
                                           book.answers(1.2), worker_errors=2,
                                           last_error='ImageError: bad'))
    assert statuses['sn: model'].level == DiagnosticStatus.OK
    assert statuses['sn: device'].message == 'cpu'
    assert statuses['sn: quantization self-test'].message == 'nf4 matmul ok'
    assert statuses['sn: camera front'].level == DiagnosticStatus.OK
    assert _values(statuses['sn: camera front'])['frames received'] == '10'
    assert statuses['sn: camera rear'].level == DiagnosticStatus.WARN
    assert 'stale' in statuses['sn: camera rear'].message
    assert statuses['sn: camera side'].level == DiagnosticStatus.WARN
    assert 'no frame' in statuses['sn: camera side'].message
    answers = _values(statuses['sn: answers'])
    assert answers['door@front answered'] == '1' and answers['standing task errors'] == '2'
    assert _values(statuses['sn: latency'])['door@front p50 (ms)'] == '12.0'
    report.selftest_ok = False
    statuses = _statuses(build_diagnostics('sn', Time(), report, [], True, 1.0, []))
    assert statuses['sn: quantization self-test'].level == DiagnosticStatus.ERROR


def test_configuration_problems_warn_on_the_model_status():
    """A standing task that names no loaded task shows as WARN."""
    report = ModelReport(phase='ready', problems=['standing task x@front is not loaded'])
    statuses = _statuses(build_diagnostics('sn', Time(), report, [], True, 1.0, []))
    assert statuses['sn: model'].level == DiagnosticStatus.WARN
    assert 'x@front' in statuses['sn: model'].message
