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
Benchmarks: the super-neuron path against the full model and against its own cost floor.

:func:`run_benchmark` measures, in one process and interleaved, (a) the full model's greedy
generation, (b) its single prefill, (c) the node's super-neuron path (:meth:`Runtime.answer`)
and (d) the floor (vision tower plus decoder layers 0..L), then sweeps exit layer, image size
and tasks per frame, and sizes memory. See docs/benchmarks.md.
"""

from superneuron_ros.jsonio import write_json
from superneuron_ros.lab.bench.config import BenchConfig, default_cache_dir
from superneuron_ros.lab.bench.report import evaluate_targets, format_report
from superneuron_ros.lab.bench.runner import run_benchmark
from superneuron_ros.lab.bench.timing import Clock, run_interleaved, Stats, summarize

__all__ = ['BenchConfig', 'Clock', 'Stats', 'default_cache_dir', 'evaluate_targets',
           'format_report', 'run_benchmark', 'run_interleaved', 'summarize', 'write_json']
