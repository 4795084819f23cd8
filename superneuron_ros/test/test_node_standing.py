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

"""Tests of the frame store and the standing-task scheduler (no ROS, no model)."""

import pytest
from superneuron_ros.node.cameras import FrameStore
from superneuron_ros.node.params import StandingTask
from superneuron_ros.node.standing import StandingScheduler

DOOR = StandingTask('door', 'front', 0.0)
SHAPE = StandingTask('shape', 'front', 0.0)
SLOW = StandingTask('slow', 'front', 2.0)  # at most every 0.5 s
REAR = StandingTask('door', 'rear', 0.0)


def test_store_keeps_only_the_newest_frame_and_counts_arrivals():
    """The store replaces the frame; count_between counts by sequence and arrival time."""
    store = FrameStore(['front', 'rear'])
    assert store.latest('front') is None and store.seq('front') == 0
    for i in range(5):
        frame = store.put('front', f'msg{i}', now=10.0 + i)
    assert store.latest('front') is frame and frame.msg == 'msg4' and frame.seq == 5
    assert frame.age(16.5) == pytest.approx(2.5)
    assert store.latest('rear') is None
    assert store.count_between('front', 1, 5) == 3
    assert store.count_between('front', 1, 5, since=12.5) == 1
    with pytest.raises(KeyError):
        store.latest('side')


def test_store_calls_on_frame_after_each_frame():
    """The worker is woken by every new frame, after the store has released its lock."""
    calls = []
    store = FrameStore(['front'], on_frame=lambda: calls.append(store.seq('front')))
    store.put('front', 'a', now=0.0)
    store.put('front', 'b', now=1.0)
    assert calls == [1, 2]


def test_every_frame_tasks_of_one_camera_share_one_batch_on_the_newest_frame():
    """Two due tasks of one camera get one batch; skipped frames count as dropped."""
    store = FrameStore(['front'])
    scheduler = StandingScheduler([DOOR, SHAPE], store)
    assert scheduler.due(0.0) == [] and scheduler.wait_time(0.0) is None
    for i in range(3):
        store.put('front', i, now=float(i))
    [batch] = scheduler.due(3.0)
    assert batch.frame.msg == 2 and batch.tasks == (DOOR, SHAPE) and batch.dropped == (2, 2)
    scheduler.consume(batch, 3.0)
    assert scheduler.due(3.1) == [] and scheduler.wait_time(3.1) is None
    store.put('front', 3, now=4.0)
    [batch] = scheduler.due(4.0)
    assert batch.dropped == (0, 0) and batch.frame.msg == 3


def test_frames_before_the_scheduler_started_are_not_counted():
    """A scheduler created after frames arrived only wants newer ones."""
    store = FrameStore(['front'])
    store.put('front', 'old', now=0.0)
    scheduler = StandingScheduler([DOOR], store)
    assert scheduler.due(1.0) == []
    store.put('front', 'new', now=1.0)
    assert scheduler.due(1.0)[0].dropped == (0,)


def test_rate_limited_task_waits_for_its_period_and_counts_only_due_frames():
    """A 2 Hz task answers at most every 0.5 s; frames before its due time are not drops."""
    store = FrameStore(['front'])
    scheduler = StandingScheduler([SLOW, DOOR], store)
    store.put('front', 0, now=0.0)
    [batch] = scheduler.due(0.0)
    assert batch.tasks == (SLOW, DOOR)
    scheduler.consume(batch, 0.0)
    store.put('front', 1, now=0.1)
    [batch] = scheduler.due(0.1)
    assert batch.tasks == (DOOR,)  # SLOW is not due before 0.5 s
    scheduler.consume(batch, 0.1)
    for i, t in enumerate([0.2, 0.3, 0.55, 0.6, 0.65]):
        store.put('front', 2 + i, now=t)
    assert scheduler.wait_time(0.3) == 0.0  # DOOR has new frames and is due
    [batch] = scheduler.due(0.7)
    assert batch.tasks == (SLOW, DOOR) and batch.frame.msg == 6
    # SLOW became due at 0.5: the frames at 0.55 and 0.6 were skipped; DOOR skipped four.
    assert batch.dropped == (2, 4)
    scheduler.consume(batch, 0.7)
    store.put('front', 7, now=0.8)
    assert scheduler.due(0.8)[0].tasks == (DOOR,)
    scheduler.consume(scheduler.due(0.8)[0], 0.8)
    store.put('front', 8, now=0.9)
    assert scheduler.wait_time(0.9) == 0.0


def test_rate_limited_task_alone_sleeps_until_due():
    """wait_time tells the worker how long to sleep when only a rate-limited task waits."""
    store = FrameStore(['front'])
    scheduler = StandingScheduler([SLOW], store)
    store.put('front', 0, now=0.0)
    scheduler.consume(scheduler.due(0.0)[0], 0.0)
    store.put('front', 1, now=0.1)
    assert scheduler.due(0.1) == []
    assert scheduler.wait_time(0.1) == pytest.approx(0.4)
    assert scheduler.due(0.5)[0].frame.msg == 1


def test_cameras_take_turns():
    """When both cameras always have new frames, batches alternate between them."""
    store = FrameStore(['front', 'rear'])
    scheduler = StandingScheduler([DOOR, REAR], store)
    order = []
    for step in range(4):
        store.put('front', step, now=step)
        store.put('rear', step, now=step)
        batch = scheduler.due(step)[0]
        scheduler.consume(batch, step)
        order.append(batch.frame.camera)
    assert order == ['front', 'rear', 'front', 'rear']
