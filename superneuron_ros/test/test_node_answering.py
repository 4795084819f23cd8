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
Tests of Ask / ListTasks and standing batches through the real worker, on a scripted runtime.

The Ask coroutine is driven by hand (no executor), with a runtime double that records what it
was asked; the end-to-end behaviour with a real model is in test_node_process.py.
"""

import time

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
from superneuron_ros.node.standing import StandingScheduler
from superneuron_ros.node.stats import StatsBook
from superneuron_ros.node.worker import INACTIVE, InferenceWorker


class Logger:
    """Collects log lines."""

    def __init__(self):
        """Start empty."""
        self.lines = []

    def warning(self, text, **kwargs):
        """Record a warning."""
        self.lines.append(('warn', text))

    def error(self, text, **kwargs):
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
                        max_image_pixels=10_000, max_aspect_ratio=10.0,
                        cameras=(CameraSpec('front', '/front/image_raw'),
                                 CameraSpec('rear', '/rear/image_raw')))


class Setup:
    """An answerer and its worker on a scripted runtime, a frame store, stats and a clock."""

    def __init__(self):
        """Load the scripted runtime and start the worker."""
        self.runtime = ScriptedRuntime()
        self.slot = ModelSlot(loader=lambda config, profiles: self.runtime)
        self.slot.load(SETTINGS)
        self.stats = StatsBook()
        self.clock = Clock()
        self.logger = Logger()
        self.published = []
        self.answerer = Answerer(self.slot, self.stats, lambda: SETTINGS, self.logger,
                                 clock=self.clock)
        self.store = FrameStore(SETTINGS.camera_names)
        self.answerer.store = self.store
        self.worker = InferenceWorker(
            self.slot, lambda: SETTINGS,
            lambda batch, outcome: self.answerer.publish_batch(
                batch, outcome, lambda *args: self.published.append(args)),
            on_error=self.logger.error, clock=self.clock)
        self.store.on_frame = self.worker.notify


@pytest.fixture
def setup():
    """Yield a Setup; stop its worker afterwards."""
    state = Setup()
    try:
        yield state
    finally:
        assert state.worker.stop(timeout=5.0)


def _image(height=4, width=6, stamp=7):
    msg = rgb_to_image(np.full((height, width, 3), 80, np.uint8),
                       Header(stamp=Time(sec=stamp), frame_id='front_optical'))
    return msg


def _run(coroutine, timeout: float = 10.0):
    """Drive a coroutine that awaits rclpy futures to its end, as the executor would."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        assert time.monotonic() < deadline, 'the Ask call did not finish'
        time.sleep(0.001)


def _ask(setup, refusal=('', ''), **fields):
    return _run(setup.answerer.ask(Ask.Request(**fields), Ask.Response(), setup.worker,
                                   refusal))


def _wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.005)


def test_model_slot_reports_what_was_loaded_and_releases(setup):
    """The slot's report shows the runtime's tasks, layer and self-test; release closes it."""
    report = setup.slot.report
    assert (report.phase, report.exit_layer, report.tasks) == ('ready', 1, ('door', 'room'))
    assert report.selftest_ok and report.selftest_message == 'nf4 matmul ok'
    setup.slot.release()
    assert setup.runtime.closed and report is not setup.slot.report
    assert setup.slot.report.phase == 'released'
    response = _ask(setup, tasks=['door'], image=_image())
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
    setup.store.put('front', _image(stamp=1), now=99.5)
    setup.store.put('front', _image(height=5, stamp=2), now=99.8)
    response = _ask(setup, tasks=['door'])
    assert response.success and response.error == '' and response.refusal == ''
    [answer] = response.answers
    assert (answer.task, answer.label, answer.label_index) == ('door', 'yes', 0)
    assert list(answer.labels) == ['yes', 'no']
    assert list(answer.scores) == [1.0, 0.0] and answer.exit_layer == 1
    assert answer.header.stamp.sec == 2 and answer.header.frame_id == 'front_optical'
    assert setup.runtime.calls == [((5, 6, 3), ('door',))]
    [series] = setup.stats.answers(setup.clock.now)
    assert (series.task, series.camera, series.answered_frames) == ('door', 'ask:front', 1)


def test_several_tasks_in_one_call_are_one_runtime_call_in_the_order_asked(setup):
    """Tasks [room, door] are answered together, in that order, with one vision pass."""
    response = _ask(setup, tasks=['room', 'door'], image=_image(height=3, width=2, stamp=42))
    assert response.success
    assert [(a.task, a.label) for a in response.answers] == [('room', 'kitchen'), ('door', 'yes')]
    assert all(a.header.stamp.sec == 42 for a in response.answers)
    assert setup.runtime.calls == [((3, 2, 3), ('room', 'door'))]
    assert {s.camera for s in setup.stats.answers(setup.clock.now)} == {'ask:request'}


def test_ask_prefers_the_image_in_the_request(setup):
    """A request image with data is answered even when the camera has a frame."""
    setup.store.put('front', _image(), now=setup.clock.now)
    response = _ask(setup, tasks=['room'], image=_image(height=3, width=2, stamp=42))
    assert response.success and response.answers[0].label == 'kitchen'
    assert setup.runtime.calls == [((3, 2, 3), ('room',))]


def _bad_requests():
    short = _image()
    short.data = bytes(short.data)[:-1]
    long = _image()
    long.data = bytes(long.data) + b'\0'
    mono = _image()
    mono.encoding = 'yuv422'
    empty = _image()
    empty.height = 0
    return [
        ({'tasks': ['window']}, 'unknown task'),
        ({'tasks': []}, 'names no task'),
        ({'tasks': ['door', '']}, 'names no task'),
        ({'tasks': ['door', 'door']}, 'more than once'),
        ({'tasks': ['door'], 'camera': 'side'}, 'unknown camera'),
        ({'tasks': ['door'], 'camera': 'rear'}, 'no frame received yet'),
        ({'tasks': ['door'], 'image': short}, 'step x height'),
        ({'tasks': ['door'], 'image': long}, 'step x height'),
        ({'tasks': ['door'], 'image': mono}, 'unsupported image encoding'),
        ({'tasks': ['door'], 'image': empty}, 'empty'),
        ({'tasks': ['door'], 'image': _image(height=200, width=60)}, 'max_image_pixels'),
        ({'tasks': ['door'], 'image': _image(height=1, width=20)}, 'max_aspect_ratio'),
        ({'tasks': ['door'], 'max_age': -1.0}, 'max_age'),
    ]


def test_every_bad_request_fails_with_advice_and_the_next_one_succeeds(setup):
    """Each bad input gives success=false, no answers and an error; then all is well."""
    setup.store.put('front', _image(), now=setup.clock.now)
    for fields, words in _bad_requests():
        response = _ask(setup, **fields)
        assert not response.success and response.refusal == '', fields
        assert words in response.error, (fields, response.error)
        assert list(response.answers) == []
        assert _ask(setup, tasks=['door']).success
    assert setup.runtime.calls == [((4, 6, 3), ('door',))] * len(_bad_requests())


def test_refusals_name_their_reason_and_never_reach_the_model(setup):
    """An inactive or stopping node refuses at once with a machine-readable reason."""
    response = _ask(setup, refusal=(INACTIVE, 'the node is not active'), tasks=['door'],
                    image=_image())
    assert (response.success, response.refusal) == (False, 'inactive')
    assert 'not active' in response.error
    setup.worker.begin_shutdown()
    response = _ask(setup, tasks=['door'], image=_image())
    assert (response.success, response.refusal) == (False, 'shutting down')
    assert setup.runtime.calls == []


def test_stale_frames_are_refused_by_default_or_request_age(setup):
    """The request's max_age overrides max_image_age; 0 uses the parameter."""
    setup.store.put('front', _image(), now=setup.clock.now - 2.0)
    response = _ask(setup, tasks=['door'])
    assert not response.success and 'more than max_age 1 s' in response.error
    assert _ask(setup, tasks=['door'], max_age=5.0).success
    assert not _ask(setup, tasks=['door'], max_age=1.5).success


def test_unexpected_runtime_errors_do_not_escape(setup):
    """A RuntimeError from the model becomes an internal error; the next call works."""
    setup.runtime.fail = RuntimeError('CUDA error: out of memory')
    response = _ask(setup, tasks=['door'], image=_image())
    assert not response.success and 'internal error' in response.error
    assert 'out of memory' in response.error
    assert any(kind == 'error' and 'RuntimeError: CUDA error: out of memory' in line
               for kind, line in setup.logger.lines)
    setup.runtime.fail = None
    assert _ask(setup, tasks=['door'], image=_image()).success


def test_list_tasks_describes_every_loaded_task(setup):
    """The ListTasks handler returns each task with its labels, layer, neurons and accuracy."""
    response = setup.answerer.list_tasks(ListTasks.Request(), ListTasks.Response())
    door, room = response.tasks
    assert (door.name, door.question, list(door.labels)) == ('door', 'Is the door open?',
                                                             ['yes', 'no'])
    assert (room.exit_layer, room.num_neurons) == (1, 5)
    assert room.calibration_accuracy == pytest.approx(0.8)


def test_standing_batch_is_one_runtime_call_with_image_headers(setup):
    """All due tasks of a frame go through one call; answers carry the image header."""
    tasks = (StandingTask('door', 'front'), StandingTask('room', 'front'))
    setup.worker.set_standing(StandingScheduler(tasks, setup.store))
    for stamp in (8, 8, 9):  # two frames skipped before the worker wakes
        setup.store.on_frame = None if stamp == 8 else setup.worker.notify
        setup.store.put('front', _image(stamp=stamp), now=setup.clock.now - 0.25)
    _wait(lambda: len(setup.published) == 2)
    assert setup.runtime.calls == [((4, 6, 3), ('door', 'room'))]
    (t1, c1, door, yes), (t2, c2, room, none) = setup.published
    assert (t1, c1, yes, t2, c2, none) == ('door', 'front', True, 'room', 'front', None)
    assert door.header.stamp.sec == 9 and door.header.frame_id == 'front_optical'
    assert door.latency_ms == pytest.approx(250.0) and room.label == 'kitchen'
    series = {(s.task, s.camera): s for s in setup.stats.answers(setup.clock.now)}
    assert series[('door', 'front')].dropped_frames == 2
    assert series[('door', 'front')].total_ms == pytest.approx(250.0)
    assert series[('room', 'front')].answered_frames == 1


def test_standing_batch_drops_old_and_broken_frames(setup):
    """Frames older than max_image_age are not answered; broken frames count and are logged."""
    setup.worker.set_standing(StandingScheduler([StandingTask('door', 'front')], setup.store))
    setup.store.put('front', _image(), now=setup.clock.now - 5.0)
    _wait(lambda: setup.worker.idle and setup.stats.answers(setup.clock.now)
          and setup.stats.answers(setup.clock.now)[0].dropped_frames == 1)
    broken = _image()
    broken.encoding = 'yuv422'
    setup.store.put('front', broken, now=setup.clock.now)
    _wait(lambda: setup.stats.answers(setup.clock.now)[0].dropped_frames == 2)
    assert setup.runtime.calls == [] and setup.published == []
    assert any('unsupported' in line for kind, line in setup.logger.lines if kind == 'error')
