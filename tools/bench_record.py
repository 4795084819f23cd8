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
Measure what one ~/record costs the executor: the DatasetWriter work of one record call.

Run with the venv's Python:

    .venv/bin/python tools/bench_record.py --sizes 64x64 640x480 1280x720 --n 30

Prints, per image size, the median, p95 and max milliseconds of one record (read the task file
and the labelled set for the counts, PNG encoding, the atomic PNG write and the synced JSONL
append) into a fresh dataset folder on the disk of --dir (default: the current folder). The
record service runs this in the node's executor thread, so this is how long one record holds
up the node's other callbacks (image intake, Ask responses).
"""

import argparse
from pathlib import Path
import statistics
import tempfile
import time

import numpy as np
from superneuron_ros.lab import scenes
from superneuron_ros.node.recording import DatasetWriter


def main() -> None:
    """Parse the arguments and print one line per image size."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['64x64', '640x480', '1280x720'])
    parser.add_argument('--n', type=int, default=30, help='records per size')
    parser.add_argument('--dir', type=Path, default=Path('.'), help='where datasets go')
    args = parser.parse_args()
    for size in args.sizes:
        width, height = (int(v) for v in size.split('x'))
        image = scenes.render(scenes.random_scene(np.random.default_rng(0)), (height, width))
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            times = []
            for i in range(args.n):
                started = time.perf_counter()
                writer = DatasetWriter(Path(folder))
                task = writer.task('bench', ['yes', 'no'], 'Is it a benchmark?')
                writer.record(task, 'yes' if i % 2 else 'no', image)
                times.append(1e3 * (time.perf_counter() - started))
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        print(f'{size}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, '
              f'max {times[-1]:.1f} ms (n={args.n})')


if __name__ == '__main__':
    main()
