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
The measurements: the four paths interleaved, and the sweeps over exit layer, size and tasks.

Every function takes models that are already loaded and returns plain JSON-able data. Timings
are milliseconds; every statistic comes from :func:`superneuron_ros.lab.bench.timing.summarize`.
"""

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench.paths import (floor_pass, FullModelPaths, image_tokens, layer_view,
                                             vision_side)
from superneuron_ros.lab.bench.timing import Clock, paired_ratios, run_interleaved, summarize
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.engine import StageTimes
from superneuron_ros.vlm.loading import LoadedModel
from superneuron_ros.vlm.selftest import SelfTestResult

LOG = logging.getLogger(__name__)
STAGES = ('preprocess_ms', 'vision_ms', 'decoder_ms', 'classify_ms')


def frames(image_size: tuple[int, int], count: int = 4, seed: int = 1) -> list[np.ndarray]:
    """Render `count` generated scenes: the frames the timed calls cycle through."""
    rng = np.random.default_rng(seed)
    return [scenes.render(scenes.random_scene(rng), image_size) for _ in range(count)]


def stage_medians(times: Sequence[StageTimes], totals: Sequence[float]) -> dict[str, float]:
    """Return the median of each stage and of the rest of the measured total ('other_ms')."""
    out = {stage: summarize([getattr(t, stage) for t in times]).median for stage in STAGES}
    out['other_ms'] = summarize([total - t.total_ms for t, total in zip(times, totals)]).median
    return out


def _ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    """Return the ratio of medians of two cases and the spread of their per-repeat ratios."""
    pairs = paired_ratios(times[a], times[b])
    return {'of_medians': summarize(times[a]).median / summarize(times[b]).median,
            'paired_median': pairs.median, 'paired_min': pairs.minimum,
            'paired_max': pairs.maximum}


def measure_main(runtime: Runtime, full: FullModelPaths | None, task_names: Sequence[str],
                 images: Sequence[np.ndarray], clock: Clock, repeats: int,
                 warmup: int) -> dict[str, Any]:
    """Time (a), (b), (c) and (d) interleaved (only (c), (d) when `full` is None)."""
    prompts = [runtime.profiles[name].prompt for name in task_names]
    pick: Callable[[int], np.ndarray] = lambda r: images[r % len(images)]  # noqa: E731
    cases = {}
    if full is not None:
        cases['a_generate'] = lambda r: full.generate(pick(r))
        cases['b_prefill'] = lambda r: full.prefill(pick(r))
    cases['c_superneuron'] = lambda r: runtime.answer(pick(r), list(task_names))
    cases['d_floor'] = lambda r: floor_pass(runtime.engine, pick(r), prompts)
    LOG.info('timing %s: %d warm-up round(s), %d repeat(s)', ', '.join(cases), warmup, repeats)
    measured = run_interleaved(cases, clock, repeats, warmup)
    result: dict[str, Any] = {
        'tasks': list(task_names),
        'stats': {name: s.to_dict() for name, s in measured.stats().items()},
        'c_stages': stage_medians([r.times for r in measured.results['c_superneuron']],
                                  measured.times['c_superneuron']),
        'd_stages': stage_medians(measured.results['d_floor'], measured.times['d_floor']),
        'ratios': {'c/d': _ratio(measured.times, 'c_superneuron', 'd_floor')},
        'answers_c': [p.label for p in measured.results['c_superneuron'][0].predictions],
        'order': measured.order}
    if full is not None:
        result['ratios']['a/c'] = _ratio(measured.times, 'a_generate', 'c_superneuron')
        result['ratios']['b/c'] = _ratio(measured.times, 'b_prefill', 'c_superneuron')
        generated = [answer for answers in measured.results['a_generate'] for answer in answers]
        result['a_new_tokens'] = summarize([g.new_tokens for g in generated]).median
        result['a_answers_named_a_label'] = sum(g.label_index is not None for g in generated) / \
            len(generated)
    return result


def measure_full_only(full: FullModelPaths, images: Sequence[np.ndarray], clock: Clock,
                      repeats: int, warmup: int) -> dict[str, Any]:
    """Time (a) and (b) interleaved, for when the two models cannot be resident at once."""
    pick = lambda r: images[r % len(images)]  # noqa: E731
    measured = run_interleaved({'a_generate': lambda r: full.generate(pick(r)),
                                'b_prefill': lambda r: full.prefill(pick(r))},
                               clock, repeats, warmup)
    generated = [answer for answers in measured.results['a_generate'] for answer in answers]
    return {'stats': {name: s.to_dict() for name, s in measured.stats().items()},
            'a_new_tokens': summarize([g.new_tokens for g in generated]).median,
            'times': measured.times}


def sweep_exit_layers(loaded: LoadedModel, folders: dict[int, Path], selftest: SelfTestResult,
                      image: np.ndarray, clock: Clock, repeats: int,
                      warmup: int) -> list[dict[str, Any]]:
    """Time (c) and (d) at each exit layer of `folders`, on views of one truncated model."""
    rows = []
    for layer in sorted(folders):
        paths = find_profiles([folders[layer]])
        profiles = [Profile.load(path) for path in paths]
        with layer_view(loaded, layer) as view:
            runtime = Runtime(view, profiles, paths, selftest)
            names = list(runtime.profiles)
            prompts = [runtime.profiles[name].prompt for name in names]
            measured = run_interleaved(
                {'c_superneuron': lambda r: runtime.answer(image, names),
                 'd_floor': lambda r: floor_pass(runtime.engine, image, prompts)},
                clock, repeats, warmup)
        stats = measured.stats()
        rows.append({'exit_layer': layer, 'c': stats['c_superneuron'].to_dict(),
                     'd': stats['d_floor'].to_dict(),
                     'c/d': stats['c_superneuron'].median / stats['d_floor'].median,
                     'c_stages': stage_medians(
                         [r.times for r in measured.results['c_superneuron']],
                         measured.times['c_superneuron'])})
        LOG.info('exit layer %d: c %.1f ms, d %.1f ms', layer, stats['c_superneuron'].median,
                 stats['d_floor'].median)
    return rows


def sweep_sizes(runtime: Runtime, task_name: str, sizes: Sequence[int], clock: Clock,
                repeats: int, warmup: int, seed: int = 1) -> list[dict[str, Any]]:
    """
    Time (c) and (d) at each vision side in `sizes`, on square frames of that side.

    The processor's resize bound is set to the side where the family allows it
    (:func:`~superneuron_ros.lab.bench.paths.vision_side`); image tokens are recorded.
    """
    prompt = runtime.profiles[task_name].prompt
    engine = runtime.engine
    rows = []
    for side in sizes:
        image = frames((side, side), count=1, seed=seed)[0]
        with vision_side(engine, side) as bounded:
            tokens, length = image_tokens(engine, image, prompt)
            measured = run_interleaved(
                {'c_superneuron': lambda r, image=image: runtime.answer(image, [task_name]),
                 'd_floor': lambda r, image=image: floor_pass(engine, image, [prompt])},
                clock, repeats, warmup)
        stats = measured.stats()
        rows.append({'image_size': [side, side], 'vision_side_applied': bounded,
                     'image_tokens': tokens, 'prompt_tokens': length,
                     'c': stats['c_superneuron'].to_dict(), 'd': stats['d_floor'].to_dict(),
                     'c_stages': stage_medians(
                         [r.times for r in measured.results['c_superneuron']],
                         measured.times['c_superneuron'])})
        LOG.info('%dx%d px (%d image tokens): c %.1f ms', side, side, tokens,
                 stats['c_superneuron'].median)
    return rows


def sweep_task_counts(runtime: Runtime, task_names: Sequence[str], counts: Sequence[int],
                      image: np.ndarray, clock: Clock, repeats: int,
                      warmup: int) -> list[dict[str, Any]]:
    """Time K tasks on one frame in one call (shared vision pass) against K separate calls."""
    rows = []
    for k in counts:
        names = list(task_names[:k])

        def separate(r: int, names: list[str] = names) -> list[Any]:
            return [runtime.answer(image, [name]) for name in names]

        measured = run_interleaved(
            {'shared': lambda r, names=names: runtime.answer(image, names),
             'separate': separate}, clock, repeats, warmup)
        stats = measured.stats()
        rows.append({'tasks': k, 'shared': stats['shared'].to_dict(),
                     'separate': stats['separate'].to_dict(),
                     'separate/shared': stats['separate'].median / stats['shared'].median,
                     'shared_stages': stage_medians(
                         [r.times for r in measured.results['shared']],
                         measured.times['shared'])})
        LOG.info('%d task(s): shared %.1f ms, separate %.1f ms', k, stats['shared'].median,
                 stats['separate'].median)
    one = next((row['shared']['median'] for row in rows if row['tasks'] == 1), None)
    for row in rows:
        row['shared/one_task'] = None if one is None else row['shared']['median'] / one
    return rows
