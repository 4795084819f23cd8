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
The demo model's own greedy answers on fresh scenes, per task and condition, with intervals.

Three conditions: 'seen' (the training phrasings, images as in training), 'unseen' (phrasings that
training never showed) and 'shifted' (seen phrasings on images outside the training ranges:
dimmer, brighter or noisier, see :data:`~superneuron_ros.lab.scenes.SHIFTS`). Every answer goes
through :func:`~superneuron_ros.vlm.loading.load_model` and
:meth:`~superneuron_ros.vlm.engine.Engine.generate`, as the product runs the model, and is mapped
with :meth:`~superneuron_ros.method.tasks.TaskSpec.match_answer`; an unmapped answer is wrong.
"""

import logging
import math
from pathlib import Path
from typing import Any, Sequence
import zlib

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.lab.scenes import (get_task, phrasings, render, sample_scene_for,
                                        shift_scene, SHIFTS, TASKS)
from superneuron_ros.lab.train_batches import Sample
from tqdm import tqdm

LOG = logging.getLogger(__name__)
CONDITIONS = ('seen', 'unseen', 'shifted')


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion (95 % for z = 1.96)."""
    if n <= 0:
        raise DataError(f'n={n} must be >= 1 for an interval')
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def balanced_samples(task: str, n: int, seed: int, size: int,
                     condition: str = 'seen') -> list[Sample]:
    """
    Return `n` one-question samples of a task, labels balanced, drawn from (seed, task).

    The scenes are varied ones, as in training (see random_scene). The question cycles through
    the task's phrasings of the condition ('unseen': the held-out ones, else the training ones);
    'shifted' cycles the images through the SHIFTS. The scenes
    are the same for every condition, so conditions differ only in wording or image.
    """
    if condition not in CONDITIONS:
        raise DataError(f'condition {condition!r} is not one of {list(CONDITIONS)}')
    spec = get_task(task)
    rng = np.random.default_rng([int(seed), 7, zlib.crc32(task.encode('utf-8'))])
    labels = [spec.labels[i % len(spec.labels)] for i in range(n)]
    labels = [labels[i] for i in rng.permutation(n)]
    texts = phrasings(task, 'unseen' if condition == 'unseen' else 'seen')
    shifts = list(SHIFTS)
    samples = []
    for i, label in enumerate(labels):
        scene = sample_scene_for(task, label, rng, varied=True)
        if condition == 'shifted':
            scene = shift_scene(scene, shifts[i % len(shifts)])
        samples.append(Sample(render(scene, size), ((task, label),), (texts[i % len(texts)],)))
    return samples


def evaluate_folder(folder: str | Path, n_per_task: int = 150, seed: int = 1000,
                    size: int = 96, tasks: Sequence[str] | None = None,
                    conditions: Sequence[str] = CONDITIONS,
                    progress_bar: bool = True) -> dict[str, dict[str, Any]]:
    """
    Measure a saved model by greedy generation; return {condition: {task: result}}.

    Each task gets `n_per_task` fresh scenes per condition (see :func:`balanced_samples`),
    rendered at `size` pixels. A result holds accuracy, n, correct, unmapped and the 95 % Wilson
    interval of the accuracy.
    """
    from superneuron_ros.vlm.engine import Engine
    from superneuron_ros.vlm.loading import load_model, LoadConfig
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none')))
    names = list(TASKS) if tasks is None else list(tasks)
    prompts: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    jobs = [(condition, task) for condition in conditions for task in names]
    for condition, task in tqdm(jobs, disable=not progress_bar, desc='evaluate', unit='task'):
        spec = get_task(task)
        correct = unmapped = 0
        for sample in balanced_samples(task, n_per_task, seed, size, condition):
            text = sample.wordings[0]
            if text not in prompts:
                prompts[text] = engine.render_prompt(text)
            index = spec.match_answer(engine.generate(sample.image, prompts[text]))
            unmapped += index is None
            correct += index == spec.label_index(sample.questions[0][1])
        low, high = wilson_interval(correct, n_per_task)
        results.setdefault(condition, {})[task] = {
            'accuracy': round(correct / n_per_task, 4), 'n': n_per_task, 'correct': correct,
            'unmapped': unmapped, 'wilson95': [round(low, 4), round(high, 4)]}
        LOG.info('%s, %s: %.1f%% of %d correct (%d unmapped)', condition, task,
                 100 * correct / n_per_task, n_per_task, unmapped)
    return results
