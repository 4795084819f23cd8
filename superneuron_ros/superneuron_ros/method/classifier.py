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
SuperNeuronClassifier: the k scalars of a profile each answer, and their weighted vote wins.

Each scalar answers on its own (a stump, or the nearest 1-D class mean), exactly as during
calibration in :mod:`superneuron_ros.method.probing`. The weighted vote shares are the per-label
scores; the confidence is the winning share. Exact ties between shares are broken by the summed
signed margin (how far past its threshold, or how close to each class mean, each scalar lies,
in units of the distance between its class means), then by the lower label index.
"""

import dataclasses
from typing import Mapping

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.method.probing import argmax_with_tiebreak, SITES
from superneuron_ros.method.profiles import Profile
import torch

SiteKey = tuple[int, str]  # (layer, site name)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One answer: the winning label, every label's vote share and the confidence."""

    label: str
    label_index: int
    labels: tuple[str, ...]
    scores: tuple[float, ...]  # vote share per label, summing to 1
    confidence: float  # the winning label's vote share
    exit_layer: int  # the layer whose readout produced this answer
    confident: bool = True  # passed that layer's anytime threshold (always at the exit layer)


def _scales(profile: Profile) -> np.ndarray:
    """Return a positive scale [k] per neuron: the spread of its class means, else 1."""
    means = profile.means.astype(np.float64)  # [k, C]
    finite = np.isfinite(means)
    spread = np.where(finite, means, -np.inf).max(axis=1) - np.where(finite, means, np.inf).min(
        axis=1)  # [k], -inf where no mean is known
    return np.where(spread > 0, spread, 1.0)


class SuperNeuronClassifier:
    """Turn the activations of a profile's neurons into Predictions."""

    def __init__(self, profile: Profile) -> None:
        """Prepare the vote of ``profile``'s neurons and the plan of which values to read."""
        self.profile = profile
        self.labels: tuple[str, ...] = tuple(profile.task.labels)
        self.num_neurons = int(profile.layer.shape[0])
        self._threshold = profile.threshold.astype(np.float64)  # [k]
        self._polarity = profile.polarity.astype(np.float64)  # [k]
        self._means = profile.means.astype(np.float64)  # [k, C]
        self._weight = profile.weight.astype(np.float64)  # [k]
        self._scale = _scales(profile)  # [k]
        requirements: dict[SiteKey, np.ndarray] = {}
        positions: dict[SiteKey, np.ndarray] = {}
        order = np.lexsort((profile.index, profile.site, profile.layer))  # [k] by site, index
        for j in order.tolist():
            key = (int(profile.layer[j]), SITES[int(profile.site[j])])
            requirements.setdefault(key, []).append(int(profile.index[j]))
            positions.setdefault(key, []).append(j)
        self._requirements = {key: _frozen(v) for key, v in requirements.items()}
        self._positions = {key: _frozen(v) for key, v in positions.items()}
        self.exit_layer: int = int(profile.exit_layer)
        self.layers: tuple[int, ...] = (self.exit_layer,)  # layers with a readout, ascending

    def requirements_at(self, layer: int) -> dict[SiteKey, np.ndarray]:
        """Return what the readout at `layer` reads (a single-exit profile: its exit layer)."""
        self._check_layer(layer)
        return self.requirements

    def predict_at(self, layer: int, acts: Mapping[SiteKey, np.ndarray]) -> list[Prediction]:
        """Answer with the readout at `layer` from arrays read at :meth:`requirements_at`."""
        self._check_layer(layer)
        return self.predict_from_sites(acts)

    def _check_layer(self, layer: int) -> None:
        if layer not in self.layers:
            raise DataError(f'task {self.profile.task.name!r} has no readout at layer {layer}; '
                            f'its readouts are at layers {list(self.layers)}')

    @property
    def requirements(self) -> dict[SiteKey, np.ndarray]:
        """Return, per (layer, site), the sorted neuron indices to read: int64 [n_sel]."""
        return dict(self._requirements)

    @property
    def positions(self) -> dict[SiteKey, np.ndarray]:
        """Return, per (layer, site), the profile position of each required index [n_sel]."""
        return dict(self._positions)

    def assemble(self, acts: Mapping[SiteKey, np.ndarray]) -> np.ndarray:
        """Return values [B, k] in profile order from arrays read at `requirements` indices."""
        batch = None
        values = None
        for key, indices in self._requirements.items():
            if key not in acts:
                raise DataError(f'activations for layer {key[0]} site {key[1]!r} are missing; '
                                f'read every (layer, site) in requirements: '
                                f'{sorted(self._requirements)}')
            block = np.asarray(acts[key], dtype=np.float64)
            if block.ndim != 2 or block.shape[1] != indices.shape[0] \
                    or (batch is not None and block.shape[0] != batch):
                raise DataError(f'activations for {key} have shape {block.shape}; expected '
                                f'[{batch if batch is not None else "B"}, {indices.shape[0]}] '
                                'read at the requirements indices, same batch for every site')
            if values is None:
                batch = block.shape[0]
                values = np.empty((batch, self.num_neurons), dtype=np.float64)
            values[:, self._positions[key]] = block
        return values

    def votes(self, values: np.ndarray) -> np.ndarray:
        """Return each neuron's answer [B, k] (label indices) for values [B, k]."""
        values = self._check(values)
        if self.profile.kind == 'stump':
            above = values > self._threshold[None, :]
            return np.where(self._polarity[None, :] > 0, above, ~above).astype(np.int64)
        dist = np.abs(values[:, :, None] - self._means[None, :, :])  # [B, k, C]
        return np.argmin(dist, axis=2)  # first minimum: ties go to the lower label

    def margins(self, values: np.ndarray) -> np.ndarray:
        """Return the tie-break score [B, C] of each label: the summed signed, scaled margin."""
        values = self._check(values)
        if self.profile.kind == 'stump':
            finite = np.isfinite(self._threshold)
            gap = np.where(finite[None, :], values - np.where(finite, self._threshold, 0.0), 0.0)
            toward_1 = (gap * self._polarity / self._scale * self._weight).sum(axis=1)  # [B]
            return np.stack([-toward_1, toward_1], axis=1)
        dist = np.abs(values[:, :, None] - self._means[None, :, :])  # [B, k, C]
        return -np.einsum('bkc,k->bc', dist, self._weight / self._scale)

    def predict(self, values: np.ndarray) -> list[Prediction]:
        """Answer from values [B, k] given in profile neuron order."""
        values = self._check(values)
        votes = self.votes(values)  # [B, k]
        onehot = votes[:, :, None] == np.arange(len(self.labels))[None, None, :]  # [B, k, C]
        shares = np.einsum('bkc,k->bc', onehot.astype(np.float64), self._weight)
        shares /= self._weight.sum()  # [B, C]
        winners = argmax_with_tiebreak(torch.from_numpy(shares),
                                       torch.from_numpy(self.margins(values))).numpy()
        return [Prediction(label=self.labels[w], label_index=int(w), labels=self.labels,
                           scores=tuple(float(s) for s in row), confidence=float(row[w]),
                           exit_layer=self.profile.exit_layer)
                for w, row in zip(winners.tolist(), shares)]

    def predict_from_sites(self, acts: Mapping[SiteKey, np.ndarray]) -> list[Prediction]:
        """Answer from arrays [B, n_sel] read at exactly the `requirements` indices."""
        return self.predict(self.assemble(acts))

    def _check(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.num_neurons:
            raise DataError(f'values must be [batch, {self.num_neurons}] in profile neuron order, '
                            f'got shape {values.shape}')
        if np.isnan(values).any():
            raise DataError('activations contain NaN; check the model compute dtype (float16 '
                            'overflow) and the input image')
        return values


def _frozen(items: list[int]) -> np.ndarray:
    arr = np.asarray(items, dtype=np.int64)
    arr.setflags(write=False)
    return arr
