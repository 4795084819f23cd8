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
Latency and throughput bookkeeping: per (task, camera) answers and per camera frames.

Everything here is plain Python, thread-safe, and timed with caller-supplied monotonic seconds,
so that it can be tested without ROS or sleeping.
"""

from collections import deque
from dataclasses import dataclass
import threading

import numpy as np

# Ask calls are recorded apart from standing tasks, under the camera name 'ask:<camera>', or
# 'ask:request' for an image sent inside the request.
ASK_PREFIX = 'ask:'
REQUEST_SOURCE = ASK_PREFIX + 'request'


class RollingWindow:
    """Values stamped with monotonic seconds, kept for the last `window_s` seconds."""

    def __init__(self, window_s: float, max_items: int = 10000) -> None:
        """Keep at most `max_items` values of the last `window_s` seconds."""
        self.window_s = float(window_s)
        self._items: deque[tuple[float, float]] = deque(maxlen=max_items)
        self._since: float | None = None

    def add(self, now: float, value: float = 0.0) -> None:
        """Record `value` at time `now`."""
        if self._since is None:
            self._since = now
        self._items.append((now, float(value)))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._items and self._items[0][0] < now - self.window_s:
            self._items.popleft()

    def values(self, now: float) -> np.ndarray:
        """Return the values recorded within the window ending at `now`."""
        self._trim(now)
        return np.array([value for _, value in self._items], dtype=np.float64)

    def percentile(self, now: float, q: float) -> float:
        """Return the q-th percentile of the values in the window (nan when empty)."""
        values = self.values(now)
        return float(np.percentile(values, q)) if values.size else float('nan')

    def rate(self, now: float) -> float:
        """Events per second over the window (or since the first event, if shorter)."""
        if self._since is None:
            return 0.0
        count = self.values(now).size
        span = min(self.window_s, now - self._since)
        return count / span if span > 0 else 0.0


@dataclass(frozen=True)
class AnswerStats:
    """Statistics of one task on one camera (or on request images)."""

    task: str
    camera: str
    preprocess_ms: float
    vision_ms: float
    decoder_ms: float
    classify_ms: float
    total_ms: float
    p50_ms: float
    p95_ms: float
    answers_per_second: float
    dropped_frames: int
    answered_frames: int
    mean_layers_run: float = float('nan')  # over the window; NaN when the runtime says not


@dataclass(frozen=True)
class CameraStats:
    """Frames received on one camera."""

    camera: str
    received_frames: int
    frames_per_second: float
    age_s: float | None  # seconds since the newest frame arrived; None: no frame yet


class _Series:
    def __init__(self, window_s: float) -> None:
        self.window = RollingWindow(window_s)
        self.layers = RollingWindow(window_s)
        self.last = (0.0, 0.0, 0.0, 0.0, 0.0)
        self.dropped = 0
        self.answered = 0


class StatsBook:
    """Thread-safe record of answers, drops and frames, with snapshots for publishing."""

    def __init__(self, window_s: float = 10.0) -> None:
        """Compute percentiles and rates over the last `window_s` seconds."""
        self._window_s = float(window_s)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._frames: dict[str, RollingWindow] = {}
        self._received: dict[str, int] = {}
        self._last_frame: dict[str, float] = {}

    def set_window(self, window_s: float) -> None:
        """Change the rolling window for every series."""
        with self._lock:
            self._window_s = float(window_s)
            for series in self._series.values():
                series.window.window_s = self._window_s
                series.layers.window_s = self._window_s
            for frames in self._frames.values():
                frames.window_s = self._window_s

    def _get(self, task: str, camera: str) -> _Series:
        key = (task, camera)
        if key not in self._series:
            self._series[key] = _Series(self._window_s)
        return self._series[key]

    def track(self, task: str, camera: str) -> None:
        """Make (task, camera) appear in snapshots before its first answer."""
        with self._lock:
            self._get(task, camera)

    def record_answer(self, task: str, camera: str, now: float, preprocess_ms: float,
                      vision_ms: float, decoder_ms: float, classify_ms: float,
                      total_ms: float, layers_run: float = float('nan')) -> None:
        """Record one answer finished at `now`; total_ms runs from frame received to answer."""
        with self._lock:
            series = self._get(task, camera)
            series.window.add(now, total_ms)
            if np.isfinite(layers_run):
                series.layers.add(now, layers_run)
            series.last = (preprocess_ms, vision_ms, decoder_ms, classify_ms, total_ms)
            series.answered += 1

    def record_dropped(self, task: str, camera: str, count: int = 1) -> None:
        """Count frames skipped for (task, camera)."""
        if count > 0:
            with self._lock:
                self._get(task, camera).dropped += count

    def record_frame(self, camera: str, now: float) -> None:
        """Count one frame received from `camera` at `now`."""
        with self._lock:
            if camera not in self._frames:
                self._frames[camera] = RollingWindow(self._window_s)
                self._received[camera] = 0
            self._frames[camera].add(now)
            self._received[camera] += 1
            self._last_frame[camera] = now

    def forget(self, task: str, camera: str) -> None:
        """Drop the (task, camera) series, e.g. when its standing task was removed."""
        with self._lock:
            self._series.pop((task, camera), None)

    def answers(self, now: float, recent_only: bool = False) -> list[AnswerStats]:
        """
        Snapshot of every (task, camera) series, sorted by task then camera.

        With `recent_only`, only the series with an answer within the window.
        """
        with self._lock:
            snapshots = []
            for (task, camera), series in sorted(self._series.items()):
                if recent_only and series.window.values(now).size == 0:
                    continue
                layers = series.layers.values(now)
                snapshots.append(AnswerStats(
                    task, camera, *series.last, p50_ms=series.window.percentile(now, 50),
                    p95_ms=series.window.percentile(now, 95),
                    answers_per_second=series.window.rate(now),
                    dropped_frames=series.dropped, answered_frames=series.answered,
                    mean_layers_run=float(layers.mean()) if layers.size else float('nan')))
            return snapshots

    def camera(self, camera: str, now: float) -> CameraStats:
        """Snapshot of the frames received from `camera`."""
        with self._lock:
            frames = self._frames.get(camera)
            if frames is None:
                return CameraStats(camera, 0, 0.0, None)
            return CameraStats(camera, self._received[camera], frames.rate(now),
                               max(0.0, now - self._last_frame[camera]))
