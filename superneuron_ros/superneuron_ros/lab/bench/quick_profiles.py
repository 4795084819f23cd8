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
Real profiles for benchmarking a model that has none: a quick calibration on generated scenes.

A random-weight preset has no calibrated profile, and a benchmark of the super-neuron path must
run exactly what the node runs. So this module calibrates, for real but small: it renders a few
generated scenes (:mod:`superneuron_ros.lab.scenes`) whose true answers are known, reads every
scalar of the exit layer (residual stream and MLP inner activations) at the answer position
through :meth:`Engine.capture_shared`, with prompts rendered as calibration renders them, ranks
the scalars by held-out accuracy, keeps the top k and fits their thresholds with
:mod:`superneuron_ros.method.probing`, the code calibration uses. The result is an ordinary
:class:`Profile` that :meth:`Runtime.load` reads and checks like any other. On random weights
its accuracy means nothing; its cost is the real one.
"""

from dataclasses import dataclass
import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.lab import scenes
from superneuron_ros.method.calibrate import render_question
from superneuron_ros.method.probing import fit_means, fit_stumps, NeuronSet
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.ranking import heldout_scores, top_k
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.capture import Site, SITES
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.fingerprint import model_fingerprint
from superneuron_ros.vlm.fingerprint import ModelFingerprint
import torch

LOG = logging.getLogger(__name__)
POOL_SIZE = 256  # random scenes drawn before choosing a label-balanced few
NOTE = ('benchmark profile: quick calibration on generated scenes; its cost is that of any '
        'profile with these neurons, its accuracy on a random-weight model means nothing')


@dataclass(frozen=True)
class BenchTask:
    """A yes/no question about a generated scene, with its exact answer."""

    spec: TaskSpec
    truth: Callable[[scenes.Scene], str]


def _kind_task(kind: str) -> BenchTask:
    spec = TaskSpec(name=f'{kind}_present', question=f'Is there a {kind} in the image?',
                    labels=('yes', 'no'))
    return BenchTask(spec, lambda scene: 'yes' if any(s.kind == kind for s in scene.shapes)
                     else 'no')


def _colour_task(name: str) -> BenchTask:
    return BenchTask(scenes.get_task(name), lambda scene: scenes.answer(name, scene))


def bench_tasks(count: int) -> list[BenchTask]:
    """Return `count` distinct yes/no tasks: colour presence first, then shape-kind presence."""
    tasks = [_colour_task(f'{colour}_present') for colour in scenes.COLOURS]
    tasks += [_kind_task(kind) for kind in scenes.KINDS]
    if not 1 <= count <= len(tasks):
        raise DataError(f'the benchmark has {len(tasks)} generated tasks; ask for 1 to '
                        f'{len(tasks)} tasks per frame, got {count}')
    return tasks[:count]


def balanced_scenes(tasks: Sequence[BenchTask], count: int, seed: int = 0) -> list[scenes.Scene]:
    """
    Choose `count` scenes (seeded) so that every task sees each label at least twice.

    Scenes are picked greedily from a pool of random scenes, each time the one that fills most
    missing (task, label) slots. Raises DataError when `count` is too small for that.
    """
    if count < 4:
        raise DataError(f'a quick calibration needs at least 4 images (2 per label), got {count}')
    rng = np.random.default_rng(seed)
    pool = [scenes.random_scene(rng) for _ in range(POOL_SIZE)]
    answers = [[task.spec.label_index(task.truth(scene)) for task in tasks] for scene in pool]
    need = min(count // 2, 2 + count // 4)
    counts = np.zeros((len(tasks), 2), dtype=np.int64)  # [tasks, labels]
    chosen: list[int] = []
    for _ in range(count):
        best, best_gain = None, -1
        for i, row in enumerate(answers):
            if i in chosen:
                continue
            gain = sum(int(counts[t, label] < need) for t, label in enumerate(row))
            if gain > best_gain:
                best, best_gain = i, gain
        chosen.append(best)
        for t, label in enumerate(answers[best]):
            counts[t, label] += 1
    if int(counts.min()) < 2:
        raise DataError(f'{count} calibration images cannot give every one of {len(tasks)} '
                        'tasks two examples of each label; use more calibration images')
    return [pool[i] for i in chosen]


def capture_layers(engine: Engine, images: Sequence[np.ndarray], prompts: Sequence[str],
                   layers: Sequence[int]) -> dict[Site, torch.Tensor]:
    """Read every scalar of `layers` for each image and prompt: per site, [images, prompts, n]."""
    sites = {(layer, site): None for layer in layers for site in SITES}
    per_image = [engine.capture_shared(image, list(prompts), sites)[0] for image in images]
    return {key: torch.stack([values[key] for values in per_image]) for key in sites}


def fit_profile(task: TaskSpec, prompt: str, layer: int, values: dict[str, torch.Tensor],
                labels: torch.Tensor, k: int, fingerprint: ModelFingerprint) -> Profile:
    """Fit a k-neuron stump profile at `layer` from values per site [n, size] and labels [n]."""
    blocks = NeuronSet([(layer, site, values[site].shape[1]) for site in SITES])
    x = torch.cat([values[site] for site in SITES], dim=1)  # [n, hidden + intermediate]
    folds = max(2, min(3, int(torch.bincount(labels, minlength=2).min())))
    scores = heldout_scores(x, labels, 2, folds=folds)  # [hidden + intermediate]
    best = top_k(scores, k)  # [k]
    chosen = x[:, best]  # [n, k]
    stumps = fit_stumps(chosen, labels)
    means = fit_means(chosen, labels, 2).T  # [k, 2]
    return Profile.from_neurons(
        blocks.locate(best), task=task, prompt=prompt, exit_layer=layer, kind='stump',
        threshold=stumps.threshold.numpy(), polarity=stumps.polarity.numpy(),
        means=means.numpy(), weight=np.ones(len(best), dtype=np.float32),
        fingerprint=fingerprint,
        metrics={'heldout_accuracy': float(scores[best].mean()), 'calibration_images':
                 int(labels.shape[0]), 'folds': folds, 'note': NOTE})


def quick_profiles(engine: Engine, folder: Path, quantization: str,
                   plan: Mapping[str, tuple[Sequence[int], int]], image_size: tuple[int, int],
                   k: int, calibration_images: int, out_dir: Path,
                   seed: int = 0) -> dict[str, dict[int, Path]]:
    """
    Calibrate benchmark profiles and save them under ``out_dir/<entry>/L<layer>/<task>``.

    `plan` maps an entry name to (exit layers, number of tasks): each entry costs one capture
    pass per image that reads the first that many tasks at those layers. Returns, per entry and
    exit layer, the folder holding the profiles of that entry's tasks at that layer.
    """
    tasks = bench_tasks(max(count for _, count in plan.values()))
    chosen = balanced_scenes(tasks, calibration_images, seed)
    images = [scenes.render(scene, image_size) for scene in chosen]
    labels = torch.tensor([[task.spec.label_index(task.truth(scene)) for task in tasks]
                           for scene in chosen])  # [n, tasks]
    prompts = [engine.render_prompt(render_question(task.spec)) for task in tasks]
    fingerprints: dict[int, ModelFingerprint] = {}
    folders: dict[str, dict[int, Path]] = {}
    for name, (layers, count) in plan.items():
        LOG.info('quick calibration %r: %d image(s), %d task(s), layer(s) %s', name,
                 len(images), count, list(layers))
        values = capture_layers(engine, images, prompts[:count], layers)
        folders[name] = {}
        for layer in layers:
            if layer not in fingerprints:
                fingerprints[layer] = model_fingerprint(folder, engine.loaded.config,
                                                        quantization, layer)
            where = out_dir / name / f'L{layer}'
            for t in range(count):
                profile = fit_profile(tasks[t].spec, prompts[t], layer,
                                      {site: values[(layer, site)][:, t] for site in SITES},
                                      labels[:, t], k, fingerprints[layer])
                profile.save(where / tasks[t].spec.name, overwrite=True)
            folders[name][layer] = where
    return folders
