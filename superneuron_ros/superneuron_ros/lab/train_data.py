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
The demo model's training data: images drawn with their questions, answers and wordings.

:func:`draw_samples` makes one training batch from generated scenes
(:mod:`~superneuron_ros.lab.scenes`); :mod:`~superneuron_ros.lab.train` consumes it.
"""

from typing import Any, Sequence

import numpy as np
from superneuron_ros.lab.scenes import (answer, COLOURS, get_task, phrasings, random_scene,
                                        render, sample_scene_for, Scene)
from superneuron_ros.lab.train_batches import Sample


def _presence_questions(scene: Scene, rng: np.random.Generator, pairs: int,
                        skip: str) -> list[tuple[str, str]]:
    """Return up to `pairs` yes and as many no presence questions about `scene` (balanced)."""
    present = sorted({shape.colour for shape in scene.shapes} - {skip})
    absent = sorted(set(COLOURS) - {shape.colour for shape in scene.shapes} - {skip})
    k = min(pairs, len(present), len(absent))
    return ([(f'{c}_present', 'yes') for c in rng.permutation(present)[:k]]
            + [(f'{c}_present', 'no') for c in rng.permutation(absent)[:k]])


def _simple_sample(rng: np.random.Generator, weights: dict[str, float], size: int) -> Sample:
    """Draw a one-shape scene asked about its colour: present, one absent colour, largest."""
    scene = random_scene(rng, n_shapes=1, varied=True)
    questions = _presence_questions(scene, rng, 1, '')
    if weights.get('shape_colour', 0) > 0:
        questions.append(('shape_colour', scene.shapes[0].colour))
    questions = [(task, label) for task, label in questions if weights.get(task, 0) > 0]
    return _worded(scene, size, questions, rng)


def _worded(scene: Scene, size: int, questions: list[tuple[str, str]],
            rng: np.random.Generator) -> Sample:
    """Render `scene` with its questions each worded by a random training phrasing."""
    texts = []
    for task, _ in questions:
        options = phrasings(task, 'seen')
        texts.append(options[int(rng.integers(len(options)))])
    return Sample(render(scene, size), tuple(questions), tuple(texts), scene)


_EXTRAS = ('shape_count', 'shape_colour', 'red_touching_edge', 'shape_in_left_half')


def balance_extras(drafts: list[tuple[Any, list[tuple[str, str]], int]],
                   rng: np.random.Generator) -> None:
    """
    Drop added yes/no questions of the majority label so each such task is balanced in a batch.

    Random scenes mostly have a shape in the left half and a red shape away from the edge: taken
    as they come, those added questions are 70-90% one answer, and a model learns the prior
    instead of looking. `drafts` holds (image or scene, questions, number of leading questions
    to keep).
    """
    for task in ('red_touching_edge', 'shape_in_left_half'):
        counts = {'yes': 0, 'no': 0}
        extras: dict[str, list[tuple[int, int]]] = {'yes': [], 'no': []}
        for i, (_, questions, kept) in enumerate(drafts):
            for j, (name, label) in enumerate(questions):
                if name == task:
                    counts[label] += 1
                    if j >= kept:
                        extras[label].append((i, j))
        major = max(counts, key=counts.get)
        surplus = min(counts[major] - min(counts.values()), len(extras[major]))
        drop = {extras[major][k] for k in rng.permutation(len(extras[major]))[:surplus]}
        for i, j in sorted(drop, reverse=True):
            del drafts[i][1][j]


def draw_samples(rng: np.random.Generator, n: int, weights: dict[str, float],
                 sizes: Sequence[int], presence_pairs: int = 2,
                 simple: float = 0.0) -> list[Sample]:
    """
    Draw `n` images, each with a main question and further questions about the same scene.

    The main question's task is drawn by weight and its label uniformly, then a scene with that
    answer. Added to it: `presence_pairs` present and as many absent colours (so presence stays
    balanced), and the count, largest colour, red-at-the-edge and left-half questions where
    they apply (the last two balanced over the batch, see `balance_extras`). A fraction
    `simple` of the images are one-shape scenes instead (see `_simple_sample`). Each question is
    worded by a random training phrasing of its task.
    """
    names = [name for name, weight in weights.items() if weight > 0]
    p = np.array([weights[name] for name in names], dtype=np.float64)
    samples, drafts = [], []
    for task in rng.choice(names, size=n, p=p / p.sum()):
        if simple > 0 and rng.random() < simple:
            sample = _simple_sample(rng, weights, int(sizes[int(rng.integers(len(sizes)))]))
            if sample.questions:
                samples.append(sample)
                continue
        spec = get_task(str(task))
        label = spec.labels[int(rng.integers(len(spec.labels)))]
        scene = sample_scene_for(spec.name, label, rng, varied=True)
        colour = spec.name[:-len('_present')] if spec.name.endswith('_present') else ''
        questions = [(spec.name, label)] + _presence_questions(scene, rng, presence_pairs, colour)
        kept = len(questions)
        for extra in _EXTRAS:
            truth = answer(extra, scene)
            if extra != spec.name and truth is not None and weights.get(extra, 0) > 0:
                questions.append((extra, truth))
        size = int(sizes[int(rng.integers(len(sizes)))])
        drafts.append(((scene, size), questions, kept))
    balance_extras(drafts, rng)
    return samples + [_worded(scene, size, questions, rng)
                      for (scene, size), questions, _ in drafts]
