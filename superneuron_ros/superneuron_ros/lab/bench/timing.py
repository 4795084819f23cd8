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
Timing primitives: one timed call, interleaved repeats after warm-up, and robust summaries.

On CUDA a call is timed with CUDA events around it (after a synchronize, so queued work of an
earlier call is not counted); on CPU with :func:`time.perf_counter`. Cases are run interleaved:
every repeat runs each case once, in an order rotated from one repeat to the next, so that a slow
phase of a shared machine is spread over all cases instead of landing on one of them.
"""

from dataclasses import asdict, dataclass
import math
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import torch


@dataclass(frozen=True)
class Stats:
    """Summary of repeated timings in milliseconds: median and spread."""

    n: int
    median: float
    p25: float
    p75: float
    minimum: float
    maximum: float
    mean: float

    @property
    def iqr(self) -> float:
        """Return the interquartile range (p75 - p25)."""
        return self.p75 - self.p25

    def to_dict(self) -> dict[str, float]:
        """Return the fields as a JSON-able mapping."""
        return asdict(self)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Interpolate linearly the quantile at fraction q (0..1) of sorted values."""
    if not sorted_values:
        raise ValueError('no values to summarise')
    position = q * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    fraction = position - low
    return sorted_values[low] * (1.0 - fraction) + sorted_values[high] * fraction


def summarize(samples: Sequence[float]) -> Stats:
    """Return the Stats of a non-empty sequence of timings (milliseconds)."""
    values = sorted(float(v) for v in samples)
    if not values:
        raise ValueError('no timings to summarise: run at least one repeat')
    return Stats(n=len(values), median=statistics.median(values), p25=quantile(values, 0.25),
                 p75=quantile(values, 0.75), minimum=values[0], maximum=values[-1],
                 mean=statistics.fmean(values))


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> Stats:
    """Summarise per-repeat ratios of two interleaved cases (same repeat, same conditions)."""
    if len(numerator) != len(denominator):
        raise ValueError(f'paired ratios need as many samples on both sides, got '
                         f'{len(numerator)} and {len(denominator)}')
    return summarize([a / b for a, b in zip(numerator, denominator)])


class Clock:
    """Times one call on a device: CUDA events on CUDA, perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        """Prepare a clock for `device`."""
        self.device = torch.device(device)
        self.uses_cuda_events = self.device.type == 'cuda'

    def sync(self) -> None:
        """Wait for the device's queued work (no-op on CPU)."""
        if self.uses_cuda_events:
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        """Run `fn()` and return its result and the elapsed milliseconds."""
        self.sync()
        if self.uses_cuda_events:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            end.synchronize()
            return result, float(start.elapsed_time(end))
        begin = time.perf_counter()
        result = fn()
        return result, 1e3 * (time.perf_counter() - begin)


Case = Callable[[int], Any]  # called with the repeat index (warm-up runs get negative ones)


@dataclass
class Measured:
    """What an interleaved run recorded: per case, the timings and what the calls returned."""

    times: dict[str, list[float]]
    results: dict[str, list[Any]]
    order: list[list[str]]  # the case order of every timed repeat

    def stats(self) -> dict[str, Stats]:
        """Return the Stats of every case."""
        return {name: summarize(values) for name, values in self.times.items()}


def run_interleaved(cases: Mapping[str, Case], clock: Clock, repeats: int,
                    warmup: int = 1) -> Measured:
    """
    Time every case `repeats` times, interleaved and rotated, after `warmup` untimed rounds.

    Repeat r runs the cases starting from the (r mod n)-th, in the given cyclic order. Warm-up
    rounds call every case with negative repeat indices and record nothing.
    """
    if repeats < 1:
        raise ValueError(f'repeats must be at least 1, got {repeats}')
    if warmup < 0:
        raise ValueError(f'warmup must be at least 0, got {warmup}')
    names = list(cases)
    if not names:
        raise ValueError('no cases to time')
    for w in range(warmup):
        for name in names:
            cases[name](-1 - w)
    measured = Measured({name: [] for name in names}, {name: [] for name in names}, [])
    for r in range(repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        measured.order.append(order)
        for name in order:
            result, elapsed = clock.time(lambda: cases[name](r))
            measured.times[name].append(elapsed)
            measured.results[name].append(result)
    return measured
