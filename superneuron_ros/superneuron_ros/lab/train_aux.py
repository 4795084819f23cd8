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
An auxiliary read-out that teaches the demo model's vision side what its scenes contain.

A released VLM's vision encoder comes pretrained on image content (CLIP's contrastive captions)
before the language model ever learns to read it, and its patch features say what is where; a
demo model trained from random weights has no such stage, and its decoder has to discover
colour, position and number through the answer tokens alone, which on a CPU budget it does for
colour presence only. :class:`VisionReadout` is the stand-in, two linear read-outs of the
projector output (the features the decoder receives) whose cross-entropy is added to the
language-model loss:

- pooled: the output averaged over the image tokens (the features of calibration's "vision only"
  row) predicts the answer of every question asked about the image;
- dense: each image token predicts the colour under its patch (or background) and its own column
  and row, so that the features say which colour is where, linearly, from the start.

It shapes the vision tower and the projector only; the read-out is used in training and never
saved, so the shipped model is a plain LLaVA answering by generation.
"""

from dataclasses import replace
import math
from typing import Any, Sequence

import numpy as np
from superneuron_ros.lab.scene_types import COLOURS, Scene
from superneuron_ros.lab.scenes import get_task, render
from superneuron_ros.lab.train_batches import Sample
import torch

_CELL = 8  # pixels per grid cell in the colour map's render
_COVER = 0.2  # least share of a cell one colour covers to label it (else background)


def colour_grid(scene: Scene, grid: int) -> np.ndarray:
    """
    Return the colour under each of grid x grid cells: 0 background, 1 + index in COLOURS.

    The scene is rendered clean (black background, no noise, brightness 1), so interior shape
    pixels carry their colour exactly; a cell takes the colour covering most of it, if that
    covers at least a fifth of it.
    """
    clean = replace(scene, background=(0, 0, 0), background_end=None, noise=0.0,
                    brightness=1.0)
    side = grid * _CELL
    image = render(clean, side).astype(np.int16)  # (S, S, 3)
    counts = np.zeros((len(COLOURS) + 1, grid, grid))
    for index, rgb in enumerate(COLOURS.values(), start=1):
        exact = np.all(image == np.asarray(rgb, dtype=np.int16), axis=-1)  # (S, S)
        counts[index] = exact.reshape(grid, _CELL, grid, _CELL).sum(axis=(1, 3))
    counts[0] = _COVER * _CELL * _CELL - 0.5  # background unless a colour covers enough
    return counts.argmax(axis=0)  # (grid, grid)


class VisionReadout(torch.nn.Module):
    """Per-task linear classifiers on the pooled projector output, and dense ones per token."""

    def __init__(self, width: int, tasks: Sequence[str], tokens: int) -> None:
        """
        Build the read-outs on features of `width` for `tokens` image tokens (a square grid).

        The pooled one has a block of logits per task (its labels, in TaskSpec order).
        """
        super().__init__()
        self.tasks = list(tasks)
        self.labels = {task: list(get_task(task).labels) for task in self.tasks}
        self.offsets: dict[str, int] = {}
        total = 0
        for task in self.tasks:
            self.offsets[task] = total
            total += len(self.labels[task])
        self.linear = torch.nn.Linear(width, total)
        self.colour = torch.nn.Linear(width, len(COLOURS) + 1)
        self.grid = math.isqrt(tokens)
        if self.grid * self.grid != tokens:
            raise ValueError(f'{tokens} image tokens are not a square grid')
        self.position = torch.nn.Linear(width, 2 * self.grid)  # column logits, then row
        self._features: torch.Tensor | None = None

    def attach(self, model: torch.nn.Module) -> Any:
        """Capture the LLaVA projector's output on every forward; return the hook handle."""
        def keep(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
            self._features = output

        return model.model.multi_modal_projector.register_forward_hook(keep)

    def loss(self, samples: Sequence[Sample]) -> torch.Tensor:
        """Return the pooled question loss plus the dense colour and position losses."""
        if self._features is None:
            raise RuntimeError('no projector output captured: attach() before the forward')
        features = self._features.float()  # [B, N, D]
        self._features = None
        return self._pooled_loss(features.mean(dim=1), samples) + self._dense_loss(
            features, samples)

    def _dense_loss(self, features: torch.Tensor, samples: Sequence[Sample]) -> torch.Tensor:
        """Return the per-token colour and column / row cross-entropy (samples with scenes)."""
        rows = [i for i, sample in enumerate(samples) if sample.scene is not None]
        if not rows:
            return features.sum() * 0.0
        grid = self.grid
        targets = torch.as_tensor(np.stack([colour_grid(samples[i].scene, grid).reshape(-1)
                                            for i in rows]), device=features.device)  # [R, N]
        chosen = features[rows]  # [R, N, D]
        colour = torch.nn.functional.cross_entropy(
            self.colour(chosen).flatten(0, 1), targets.flatten())
        cells = torch.arange(grid * grid, device=features.device)
        position = self.position(chosen)  # [R, N, 2 * grid]
        column = torch.nn.functional.cross_entropy(
            position[..., :grid].flatten(0, 1), (cells % grid).repeat(len(rows)))
        row = torch.nn.functional.cross_entropy(
            position[..., grid:].flatten(0, 1), (cells // grid).repeat(len(rows)))
        return colour + 0.5 * (column + row)

    def _pooled_loss(self, pooled: torch.Tensor, samples: Sequence[Sample]) -> torch.Tensor:
        """Return the mean cross-entropy of the pooled read-out over every asked question."""
        logits = self.linear(pooled)  # [B, total]
        losses = []
        for row, sample in enumerate(samples):
            for task, label in sample.questions:
                if task not in self.offsets:
                    continue
                start = self.offsets[task]
                block = logits[row, start:start + len(self.labels[task])]
                target = torch.tensor(self.labels[task].index(label), device=block.device)
                losses.append(torch.nn.functional.cross_entropy(block[None], target[None]))
        if not losses:
            return logits.sum() * 0.0
        return torch.stack(losses).mean()
