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
What the set of loaded profiles costs, and what the anytime exit saves.

- :func:`measure_loaded`: a shallow question answered with only its profile loaded against the
  same question with deeper profiles loaded too (per-call depth: the ratio should be about 1), and
  every loaded question asked on one frame against the deepest of them alone (one pass, shared
  prefix), interleaved, through :meth:`Runtime.answer` as the node calls it.
- :func:`measure_anytime`: accuracy (with a 95% Wilson interval) and mean decoder layers run of
  each loaded task on fresh generated scenes, one task per call.
"""

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench.timing import Clock, paired_ratios, run_interleaved, summarize
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.config import LoadConfig


def _ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    pairs = paired_ratios(times[a], times[b])
    return {'of_medians': summarize(times[a]).median / summarize(times[b]).median,
            'paired_median': pairs.median, 'paired_min': pairs.minimum,
            'paired_max': pairs.maximum}


def measure_loaded(load_config: LoadConfig, paths: Sequence[Path], image: np.ndarray,
                   clock: Clock, repeats: int, warmup: int,
                   bound: Any = None) -> dict[str, Any]:
    """
    Time the shallowest task alone-loaded and all-loaded, the deepest alone, and all asked.

    `paths` are profile folders; the shallowest exit layer's task (first by name on ties) is the
    shallow question, the deepest one's the deep question. `bound(loaded)` may adjust each loaded
    model (the run's vision side).
    """
    everything = Runtime.load(load_config, list(paths))
    try:
        infos = everything.tasks
        shallow = min(infos, key=lambda n: (infos[n].exit_layer, n))
        deepest = max(infos, key=lambda n: (infos[n].exit_layer, n))
        names = sorted(infos, key=lambda n: (infos[n].exit_layer, n))
        alone = Runtime.load(load_config, [Path(infos[shallow].profile_path)])
        if bound is not None:
            bound(everything.loaded)
            bound(alone.loaded)
        cases = {'shallow_alone_loaded': lambda r: alone.answer(image, [shallow]),
                 'shallow_all_loaded': lambda r: everything.answer(image, [shallow]),
                 'deepest_alone': lambda r: everything.answer(image, [deepest]),
                 'all_asked': lambda r: everything.answer(image, names)}
        measured = run_interleaved(cases, clock, repeats, warmup)
        alone.close()
    finally:
        everything.close()
    return {'tasks': {n: infos[n].exit_layer for n in names}, 'shallow': shallow,
            'deepest': deepest, 'loaded_depth': max(infos[n].exit_layer for n in names) + 1,
            'stats': {name: s.to_dict() for name, s in measured.stats().items()},
            'layers_run': {name: results[0].layers_run
                           for name, results in measured.results.items()},
            'ratios': {
                'shallow: all loaded / alone loaded': _ratio(
                    measured.times, 'shallow_all_loaded', 'shallow_alone_loaded'),
                'all asked / deepest alone': _ratio(measured.times, 'all_asked',
                                                    'deepest_alone')}}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return float('nan'), float('nan')
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measure_anytime(runtime: Runtime, count: int, image_size: tuple[int, int],
                    seed: int) -> dict[str, Any]:
    """
    Score every loaded task on `count` fresh generated scenes, one task per call.

    Scenes where a task does not apply (no ground truth) are skipped for that task. Returns per
    task: examples, accuracy and its interval, mean layers run and the exit layers used.
    """
    rng = np.random.default_rng(seed)
    rows: dict[str, dict[str, Any]] = {}
    known = [name for name in runtime.tasks if name in scenes.TASKS]  # with a ground truth rule
    tallies = {name: {'right': 0, 'n': 0, 'layers': [], 'exits': {}} for name in known}
    for _ in range(count):
        scene = scenes.random_scene(rng)
        image = scenes.render(scene, image_size)
        for name in known:
            truth = scenes.answer(name, scene)
            if truth is None:
                continue
            result = runtime.answer(image, [name])
            prediction = result.predictions[0]
            tally = tallies[name]
            tally['n'] += 1
            tally['right'] += int(prediction.label == truth)
            tally['layers'].append(result.layers_run)
            tally['exits'][prediction.exit_layer] = tally['exits'].get(prediction.exit_layer,
                                                                       0) + 1
    for name, tally in tallies.items():
        n = tally['n']
        low, high = wilson_interval(tally['right'], n)
        rows[name] = {'examples': n, 'accuracy': tally['right'] / n if n else float('nan'),
                      'interval95': [low, high],
                      'mean_layers_run': float(np.mean(tally['layers'])) if n else float('nan'),
                      'layers_loaded': runtime.exit_layer + 1,
                      'readout_layers': list(runtime.classifiers[name].layers),
                      'exit_layers_used': {str(k): v for k, v in sorted(tally['exits'].items())}}
    return {'scenes': count, 'seed': seed, 'image_size': list(image_size), 'tasks': rows}
