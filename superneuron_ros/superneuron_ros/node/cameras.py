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
The newest frame of each camera; every new frame wakes the inference worker.

Image callbacks only store the message (no conversion), so image intake never waits for the
model. Older frames are replaced, never queued; a short arrival history lets the worker count
the frames it skipped.
"""

from collections import deque
from dataclasses import dataclass
import threading
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Frame:
    """One received image message with its arrival order and time."""

    camera: str
    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    seq: int  # 1 for the camera's first frame, then +1 per frame
    received: float  # monotonic seconds when the node received it

    def age(self, now: float) -> float:
        """Seconds since the node received this frame."""
        return max(0.0, now - self.received)


class FrameStore:
    """Thread-safe newest frame per camera; `on_frame()` is called after every new frame."""

    def __init__(self, cameras: Sequence[str], history: int = 1024,
                 on_frame: Callable[[], None] | None = None) -> None:
        """Hold the newest frame of each camera in `cameras` and `history` arrival times."""
        self.condition = threading.Condition()
        self.on_frame = on_frame
        self._latest: dict[str, Frame | None] = dict.fromkeys(cameras)
        self._seq = dict.fromkeys(cameras, 0)
        self._arrivals = {name: deque(maxlen=history) for name in cameras}
        self.closed = False

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names, in configuration order."""
        return tuple(self._latest)

    def put(self, camera: str, msg: Any, now: float) -> Frame:
        """Store `msg` as the newest frame of `camera`, replacing the previous one."""
        with self.condition:
            self._seq[camera] += 1
            frame = Frame(camera, msg, self._seq[camera], now)
            self._latest[camera] = frame
            self._arrivals[camera].append((frame.seq, now))
            self.condition.notify_all()
        if self.on_frame is not None:
            self.on_frame()  # outside the lock: the worker reads the store under its own
        return frame

    def latest(self, camera: str) -> Frame | None:
        """Return the newest frame of `camera`, or None before the first (KeyError if unknown)."""
        with self.condition:
            return self._latest[camera]

    def seq(self, camera: str) -> int:
        """Sequence number of the newest frame of `camera` (0 before the first)."""
        with self.condition:
            return self._seq[camera]

    def count_between(self, camera: str, after_seq: int, before_seq: int,
                      since: float = float('-inf')) -> int:
        """Count frames with after_seq < seq < before_seq that arrived at or after `since`."""
        with self.condition:
            return sum(1 for seq, received in self._arrivals[camera]
                       if after_seq < seq < before_seq and received >= since)

    def close(self) -> None:
        """Wake every waiter and tell it to stop."""
        with self.condition:
            self.closed = True
            self.condition.notify_all()
