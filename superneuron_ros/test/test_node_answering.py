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
Tests of the Ask / ListTasks / standing-batch handlers against a scripted runtime.

The handlers are called directly (no executor), with a runtime double that records what it was
asked; the end-to-end behaviour with a real model is in test_node_process.py.
"""

from builtin_interfaces.msg import Time
from node_helpers import ScriptedRuntime
import numpy as np
import pytest
from std_msgs.msg import Header
from superneuron_interfaces.srv import Ask, ListTasks
from superneuron_ros.errors import ModelLoadError
from superneuron_ros.node.answering import Answerer
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.model import ModelSlot
from superneuron_ros.node.params import CameraSpec, NodeSettings, StandingTask
from superneuron_ros.node.standing import Batch
from superneuron_ros.node.stats import StatsBook


class Logger:
    """Collects log lines."""

    def __init__(self):
        """Start empty."""
        self.lines = []

    def warning(self, text):
        """Record a warning."""
        self.lines.append(('warn', text))

    def error(self, text):
        """Record an error."""
        self.lines.append(('error', text))


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 100.0):
        """Start at `now`."""
        self.now = now

    def __call__(self):
        """Return the current time."""
        return self.now


SETTINGS = NodeSettings(model_path='/m', profiles=('/p',), max_image_age=1.0,
                        max_image_pixels=10_000,
                        cameras=(CameraSpec('front', '/front/image_raw'),
                                 CameraSpec('rear', '/rear/image_raw')))


@pytest.fixture
def setup():
    """Return (answerer, runtime, store, stats, clock) with the scripted runtime loaded."""
    runtime = ScriptedRuntime()
    slot = ModelSlot(loader=lambda config, profiles: runtime)
    slot.load(SETTINGS)
    store = FrameStore(SETTINGS.camera_names)
    stats = StatsBook()
    clock = Clock()
    answerer = Answerer(slot, store, stats, lambda: SETTINGS, Logger(), clock=clock)
    return answerer, runtime, store, stats, clock


def _image(height=4, width=6, stamp=7):
    msg = rgb_to_image(np.full((height, width, 3), 80, np.uint8),
                       Header(stamp=Time(sec=stamp), frame_id='front_optical'))
    return msg


def _ask(answerer, **fields):
    request = Ask.Request(**fields)
    return answerer.ask(request, Ask.Response())


def test_model_slot_reports_what_was_loaded_and_releases(setup):
    """The slot's report shows the runtime's tasks, layer and self-test; release closes it."""
    answerer, runtime, *_ = setup
    report = answerer.model.report
    assert (report.phase, report.exit_layer, report.tasks) == ('ready', 1, ('door', 'room'))
    assert report.selftest_ok and report.selftest_message == 'nf4 matmul ok'
    answerer.model.release()
    assert runtime.closed and report is not answerer.model.report
    assert answerer.model.report.phase == 'released'
    response = _ask(answerer, task='door', image=_image())
    assert not response.success and 'no model is loaded' in response.error


def test_failed_load_is_reported_with_its_reason():
    """A loader error marks the report failed and propagates."""
    def broken(config, profiles):
        raise ModelLoadError('model folder /m does not exist; check model_path')
    slot = ModelSlot(loader=broken)
    with pytest.raises(ModelLoadError):
        slot.load(SETTINGS)
    assert slot.report.phase == 'failed' and 'check model_path' in slot.report.error
    assert slot.report.error_kind == 'ModelLoadError'
    with pytest.raises(Exception, match='profiles parameter is empty'):
        slot.load(NodeSettings(model_path='/m'))


def test_ask_answers_on_the_newest_frame_of_the_default_camera(setup):
    """An empty camera means the first camera; the newest frame and its stamp are used."""
    answerer, runtime, store, stats, clock = setup
    store.put('front', _image(stamp=1), now=99.5)
    store.put('front', _image(height=5, stamp=2), now=99.8)
    response = _ask(answerer, task='door')
    assert response.success and response.error == ''
    assert (response.label, response.label_index) == ('yes', 0)
    assert list(response.labels) == ['yes', 'no']
    assert list(response.scores) == [1.0, 0.0] and response.exit_layer == 1
    assert response.image_stamp.sec == 2 and runtime.calls == [((5, 6, 3), ('door',))]
    [series] = stats.answers(clock.now)
    assert (series.task, series.camera, series.answered_frames) == ('door', 'ask:front', 1)


def test_ask_prefers_the_image_in_the_request(setup):
    """A request image with data is answered even when the camera has a frame."""
    answerer, runtime, store, stats, clock = setup
    store.put('front', _image(), now=clock.now)
    response = _ask(answerer, task='room', image=_image(height=3, width=2, stamp=42))
    assert response.success and response.label == 'kitchen' and response.image_stamp.sec == 42
    assert runtime.calls == [((3, 2, 3), ('room',))]
    assert stats.answers(clock.now)[0].camera == 'ask:request'


def _bad_requests(store, clock):
    short = _image()
    short.data = bytes(short.data)[:-1]
    long = _image()
    long.data = bytes(long.data) + b'\0'
    mono = _image()
    mono.encoding = 'yuv422'
    empty = _image()
    empty.height = 0
    return [
        ({'task': 'window'}, 'unknown task'),
        ({'task': ''}, 'names no task'),
        ({'task': 'door', 'camera': 'side'}, 'unknown camera'),
        ({'task': 'door', 'camera': 'rear'}, 'no frame received yet'),
        ({'task': 'door', 'image': short}, 'step x height'),
        ({'task': 'door', 'image': long}, 'step x height'),
        ({'task': 'door', 'image': mono}, 'unsupported image encoding'),
        ({'task': 'door', 'image': empty}, 'empty'),
        ({'task': 'door', 'image': _image(height=200, width=60)}, 'max_image_pixels'),
        ({'task': 'door', 'max_age': -1.0}, 'max_age'),
    ]


def test_every_bad_request_fails_with_advice_and_the_next_one_succeeds(setup):
    """Each bad input gives success=false, label_index -1 and an error; then all is well."""
    answerer, runtime, store, stats, clock = setup
    store.put('front', _image(), now=clock.now)
    for fields, words in _bad_requests(store, clock):
        response = _ask(answerer, **fields)
        assert not response.success, fields
        assert words in response.error, (fields, response.error)
        assert response.label_index == -1 and list(response.scores) == []
        assert _ask(answerer, task='door').success
    assert runtime.calls == [((4, 6, 3), ('door',))] * len(_bad_requests(store, clock))


def test_stale_frames_are_refused_by_default_or_request_age(setup):
    """The request's max_age overrides max_image_age; 0 uses the parameter."""
    answerer, runtime, store, stats, clock = setup
    store.put('front', _image(), now=clock.now - 2.0)
    response = _ask(answerer, task='door')
    assert not response.success and 'more than max_age 1 s' in response.error
    assert _ask(answerer, task='door', max_age=5.0).success
    assert not _ask(answerer, task='door', max_age=1.5).success


def test_unexpected_runtime_errors_do_not_escape(setup):
    """A RuntimeError from the model becomes an internal error; the next call works."""
    answerer, runtime, store, stats, clock = setup
    runtime.fail = RuntimeError('CUDA error: out of memory')
    response = _ask(answerer, task='door', image=_image())
    assert not response.success and 'internal error' in response.error
    assert 'out of memory' in response.error
    assert ('error', "ask 'door' failed: RuntimeError: CUDA error: out of memory") in \
        answerer.logger.lines
    runtime.fail = None
    assert _ask(answerer, task='door', image=_image()).success


def test_list_tasks_describes_every_loaded_task(setup):
    """The ListTasks handler returns each task with its labels, layer, neurons and accuracy."""
    answerer, *_ = setup
    response = answerer.list_tasks(ListTasks.Request(), ListTasks.Response())
    door, room = response.tasks
    assert (door.name, door.question, list(door.labels)) == ('door', 'Is the door open?',
                                                             ['yes', 'no'])
    assert (room.exit_layer, room.num_neurons) == (1, 5)
    assert room.calibration_accuracy == pytest.approx(0.8)


def test_standing_batch_is_one_runtime_call_with_image_headers(setup):
    """All due tasks of a frame go through one call; answers carry the image header."""
    answerer, runtime, store, stats, clock = setup
    frame = store.put('front', _image(stamp=9), now=clock.now - 0.25)
    published = []
    batch = Batch(frame, (StandingTask('door', 'front'), StandingTask('room', 'front')), (2, 0))
    answerer.answer_batch(batch, lambda task, msg, yes: published.append((task, msg, yes)))
    assert runtime.calls == [((4, 6, 3), ('door', 'room'))]
    (t1, door, yes), (t2, room, none) = published
    assert (t1, yes, t2, none) == ('door', True, 'room', None)
    assert door.header.stamp.sec == 9 and door.header.frame_id == 'front_optical'
    assert door.latency_ms == pytest.approx(250.0) and room.label == 'kitchen'
    series = {(s.task, s.camera): s for s in stats.answers(clock.now)}
    assert series[('door', 'front')].dropped_frames == 2
    assert series[('door', 'front')].total_ms == pytest.approx(250.0)
    assert series[('room', 'front')].answered_frames == 1


def test_standing_batch_drops_old_and_broken_frames(setup):
    """Frames older than max_image_age are not answered; broken frames count and raise."""
    answerer, runtime, store, stats, clock = setup
    task = StandingTask('door', 'front')
    old = store.put('front', _image(), now=clock.now - 5.0)
    answerer.answer_batch(Batch(old, (task,), (0,)), lambda *a: pytest.fail('published'))
    broken = _image()
    broken.encoding = 'yuv422'
    frame = store.put('front', broken, now=clock.now)
    with pytest.raises(Exception, match='unsupported'):
        answerer.answer_batch(Batch(frame, (task,), (0,)), lambda *a: pytest.fail('published'))
    assert runtime.calls == []
    assert stats.answers(clock.now)[0].dropped_frames == 2
