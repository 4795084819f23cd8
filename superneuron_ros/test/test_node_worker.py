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

"""Tests of the inference worker: one model caller, bounded queue, shared passes (no ROS)."""

import threading
import time

import numpy as np
from superneuron_ros.errors import ImageError
from superneuron_ros.method.classifier import Prediction
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.params import NodeSettings, StandingTask
from superneuron_ros.node.standing import StandingScheduler
from superneuron_ros.node.worker import BUSY, InferenceWorker, Job, SHUTTING_DOWN
from superneuron_ros.runtime.facade import RuntimeResult
from superneuron_ros.vlm.engine import StageTimes

DOOR = StandingTask('door', 'front', 0.0)


class FakeModel:
    """Answers label 0 for every task after `delay` seconds; can be held or made to fail."""

    def __init__(self, delay: float = 0.0) -> None:
        """Answer after `delay` seconds, with the gate open."""
        self.delay = delay
        self.calls = []
        self.fail = None
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()
        self.on_call = None

    def answer(self, image, names):
        """Return label 0 for each task, as the real Runtime's result type."""
        self.running.set()
        if self.on_call is not None:
            self.on_call()
        self.gate.wait(10.0)
        self.calls.append((image.shape, tuple(names)))
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return RuntimeResult(tuple(Prediction('yes', 0, ('yes', 'no'), (1.0, 0.0), 1.0, 1)
                                   for _ in names), StageTimes(1.0, 2.0, 3.0, 0.5), layers_run=2)


def _msg(value: int = 0, size: int = 4):
    return rgb_to_image(np.full((size, size, 3), value, np.uint8))


class Recorder:
    """A worker with a fake model; records batches and job outcomes."""

    def __init__(self, delay: float = 0.0, **settings) -> None:
        """Start a worker on a fake model with `settings` overriding the defaults."""
        self.model = FakeModel(delay)
        self.settings = NodeSettings(max_image_age=0.0, **settings)
        self.batches = []
        self.worker = InferenceWorker(self.model, lambda: self.settings,
                                      lambda batch, outcome: self.batches.append((batch, outcome)))

    def job(self, tasks=('door',), msg=None, key=None) -> tuple[Job, list]:
        """Return a job and the list its outcomes are appended to."""
        outcomes = []
        job = Job(tuple(tasks), msg or _msg(), key, 'ask:request', time.monotonic(),
                  finish=outcomes.append)
        return job, outcomes


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.005)


def test_standing_tasks_skip_to_the_newest_frame_and_never_build_a_backlog():
    """With frames much faster than answers, every answer is on the newest frame."""
    rec = Recorder(delay=0.03)
    store = FrameStore(['front'], on_frame=rec.worker.notify)
    rec.worker.set_standing(StandingScheduler([DOOR], store))
    try:
        for i in range(100):
            store.put('front', _msg(i), now=time.monotonic())
            time.sleep(0.002)
        _wait(lambda: rec.worker.idle and rec.batches
              and rec.batches[-1][0].frame.seq == 100)
        final = len(rec.batches)
        time.sleep(0.1)
        assert len(rec.batches) == final, 'the worker kept answering after frames stopped'
    finally:
        assert rec.worker.stop(timeout=5.0)
    assert 3 <= final < 60
    seqs = [batch.frame.seq for batch, _ in rec.batches]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 100
    assert len(seqs) + sum(sum(batch.dropped) for batch, _ in rec.batches) == 100
    assert all(not outcome.error and 'door' in outcome.predictions for _, outcome in rec.batches)


def test_asks_and_standing_tasks_on_one_frame_share_one_model_call():
    """Two Ask jobs on the newest frame and the due standing task run as one pass."""
    rec = Recorder()
    store = FrameStore(['front'], on_frame=rec.worker.notify)
    rec.model.gate.clear()  # hold the model so that everything queues up
    try:
        blocker, _ = rec.job(('door',))
        assert rec.worker.submit(blocker) == ''
        _wait(rec.model.running.is_set)
        rec.worker.set_standing(StandingScheduler([DOOR], store))
        frame = store.put('front', _msg(7, size=6), now=time.monotonic())
        first, first_out = rec.job(('door', 'room'), frame.msg, ('front', frame.seq))
        second, second_out = rec.job(('shape',), frame.msg, ('front', frame.seq))
        other, other_out = rec.job(('room',))  # a request image: a pass of its own
        for job in (first, other, second):
            assert rec.worker.submit(job) == ''
        rec.model.gate.set()
        _wait(lambda: first_out and second_out and other_out and rec.worker.idle)
    finally:
        assert rec.worker.stop(timeout=5.0)
    assert [call[1] for call in rec.model.calls] == [('door',), ('door', 'room', 'shape'),
                                                     ('room',)]
    assert rec.model.calls[1][0] == (6, 6, 3)
    assert set(first_out[0].predictions) == {'door', 'room', 'shape'} == set(
        second_out[0].predictions)
    [(batch, outcome)] = rec.batches
    assert batch.frame.seq == 1 and outcome is first_out[0]


def test_a_full_queue_refuses_at_once_as_busy_and_every_job_finishes():
    """Beyond max_queue a job is refused; the accepted ones are all answered in order."""
    rec = Recorder(max_queue=3)
    rec.model.gate.clear()
    jobs = [rec.job((f'task{i}',)) for i in range(6)]
    try:
        assert rec.worker.submit(jobs[0][0]) == ''
        _wait(rec.model.running.is_set)  # the first is running, the queue is empty
        answers = [rec.worker.submit(job) for job, _ in jobs[1:]]
        assert answers == ['', '', '', BUSY, BUSY]
        assert rec.worker.queued == 3
        rec.model.gate.set()
        _wait(lambda: all(out for _, out in jobs[:4]) and rec.worker.idle)
    finally:
        assert rec.worker.stop(timeout=5.0)
    assert [call[1] for call in rec.model.calls] == [(f'task{i}',) for i in range(4)]
    assert all(not out[0].error for _, out in jobs[:4])
    assert not jobs[4][1] and not jobs[5][1]  # refused jobs are answered by the caller


def test_shutdown_refuses_the_queue_and_lets_the_running_call_finish():
    """begin_shutdown: queued jobs are refused as shutting down; the running one answers."""
    rec = Recorder()
    rec.model.gate.clear()
    running, running_out = rec.job(('door',))
    queued = [rec.job(('door',)) for _ in range(3)]
    try:
        assert rec.worker.submit(running) == ''
        _wait(rec.model.running.is_set)
        for job, _ in queued:
            assert rec.worker.submit(job) == ''
        assert rec.worker.begin_shutdown() == 3
        assert rec.worker.submit(rec.job()[0]) == SHUTTING_DOWN
        assert all(out[0].refusal == SHUTTING_DOWN and 'shutting down' in out[0].error
                   for _, out in queued)
        assert not running_out and not rec.worker.idle
        rec.model.gate.set()
        _wait(lambda: running_out and rec.worker.idle)
    finally:
        assert rec.worker.stop(timeout=5.0)
    assert not running_out[0].error and running_out[0].predictions['door'].label == 'yes'


def test_errors_become_outcomes_and_the_next_job_is_answered():
    """A bad image, a core error and a crash each finish their job; the worker goes on."""
    rec = Recorder(max_image_pixels=100)
    try:
        big, big_out = rec.job(msg=_msg(size=20))
        rec.worker.submit(big)
        _wait(lambda: big_out)
        assert 'max_image_pixels' in big_out[0].error and not big_out[0].refusal
        for failure, words in ((ImageError('no pixels'), 'no pixels'),
                               (RuntimeError('device lost'), 'internal error (RuntimeError')):
            rec.model.fail = failure
            job, out = rec.job()
            rec.worker.submit(job)
            _wait(lambda: out)
            assert words in out[0].error and not out[0].predictions
        rec.model.fail = None
        job, out = rec.job()
        rec.worker.submit(job)
        _wait(lambda: out)
        assert not out[0].error and out[0].predictions['door'].label == 'yes'
        assert out[0].preprocess_ms >= 1.0 and out[0].vision_ms == 2.0
    finally:
        assert rec.worker.stop(timeout=5.0)


def test_asks_and_standing_batches_take_turns():
    """With Ask jobs always waiting and a new frame every call, the two alternate."""
    rec = Recorder()
    store = FrameStore(['front'], on_frame=rec.worker.notify)
    rec.model.gate.clear()
    try:
        blocker, _ = rec.job(('hold',))
        rec.worker.submit(blocker)
        _wait(rec.model.running.is_set)
        rec.worker.set_standing(StandingScheduler([DOOR], store))
        rec.model.on_call = lambda: store.put('front', _msg(1), now=time.monotonic())
        jobs = [rec.job(('ask',)) for _ in range(3)]
        for job, _ in jobs:
            rec.worker.submit(job)
        store.put('front', _msg(1), now=time.monotonic())
        rec.model.gate.set()
        _wait(lambda: all(out for _, out in jobs))
    finally:
        assert rec.worker.stop(timeout=5.0)
    order = [call[1][0] for call in rec.model.calls]
    assert order[:7] == ['hold', 'door', 'ask', 'door', 'ask', 'door', 'ask']


def test_stop_wakes_an_idle_worker_at_once():
    """A worker waiting for work stops within a fraction of a second."""
    rec = Recorder()
    start = time.monotonic()
    assert rec.worker.stop(timeout=5.0)
    assert time.monotonic() - start < 1.0
