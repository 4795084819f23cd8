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
SuperNeuronClassifier: a profile's readouts turn scalar activations into Predictions.

A profile holds one readout per anytime layer (format 2) or a single vote at its exit layer
(format 1); see :mod:`superneuron_ros.method.readouts` for what each kind computes. The runtime
asks :meth:`SuperNeuronClassifier.requirements_at` which scalars to read after a layer, and
:meth:`SuperNeuronClassifier.predict_at` answers from them: ``confident`` says whether the answer
reached that layer's anytime threshold (always at the exit layer).
"""

import dataclasses
from typing import Mapping

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.readouts import Readout
from superneuron_ros.vlm.capture import SITES

SiteKey = tuple[int, str]  # (layer, site name)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One answer: the winning label, every label's probability and the confidence."""

    label: str
    label_index: int
    labels: tuple[str, ...]
    scores: tuple[float, ...]  # calibrated probability per label, summing to 1
    confidence: float  # scores[label_index]
    exit_layer: int  # the layer whose readout produced this answer
    confident: bool = True  # passed that layer's anytime threshold (always at the exit layer)


class _Plan:
    """Which (layer, site, index) one readout reads, and where each lands in its value row."""

    def __init__(self, readout: Readout) -> None:
        requirements: dict[SiteKey, list[int]] = {}
        positions: dict[SiteKey, list[int]] = {}
        order = np.lexsort((readout.index, readout.site, readout.neuron_layer))
        for j in order.tolist():
            key = (int(readout.neuron_layer[j]), SITES[int(readout.site[j])])
            requirements.setdefault(key, []).append(int(readout.index[j]))
            positions.setdefault(key, []).append(j)
        self.requirements = {key: _frozen(v) for key, v in requirements.items()}
        self.positions = {key: _frozen(v) for key, v in positions.items()}
        self.num_neurons = readout.num_neurons

    def assemble(self, acts: Mapping[SiteKey, np.ndarray]) -> np.ndarray:
        """Return values [B, m] in readout order from arrays read at `requirements`."""
        batch = None
        values = None
        for key, indices in self.requirements.items():
            if key not in acts:
                raise DataError(f'activations for layer {key[0]} site {key[1]!r} are missing; '
                                f'read every (layer, site) in requirements: '
                                f'{sorted(self.requirements)}')
            block = np.asarray(acts[key], dtype=np.float64)
            if block.ndim != 2 or block.shape[1] != indices.shape[0] \
                    or (batch is not None and block.shape[0] != batch):
                raise DataError(f'activations for {key} have shape {block.shape}; expected '
                                f'[{batch if batch is not None else "B"}, {indices.shape[0]}] '
                                'read at the requirements indices, same batch for every site')
            if values is None:
                batch = block.shape[0]
                values = np.empty((batch, self.num_neurons), dtype=np.float64)
            values[:, self.positions[key]] = block
        return values


class SuperNeuronClassifier:
    """Turn the activations of a profile's neurons into Predictions, layer by layer."""

    def __init__(self, profile: Profile) -> None:
        """Prepare every readout of ``profile`` and the plan of which values each reads."""
        self.profile = profile
        self.labels: tuple[str, ...] = tuple(profile.task.labels)
        self._readouts = {r.layer: r for r in profile.readouts}
        self._plans = {r.layer: _Plan(r) for r in profile.readouts}
        self.layers: tuple[int, ...] = tuple(sorted(self._readouts))
        self.exit_layer: int = self.layers[-1]
        self.num_neurons = self._readouts[self.exit_layer].num_neurons

    def readout(self, layer: int) -> Readout:
        """Return the readout that answers after `layer`; DataError if there is none."""
        if layer not in self._readouts:
            raise DataError(f'task {self.profile.task.name!r} has no readout at layer {layer}; '
                            f'its readouts are at layers {list(self.layers)}')
        return self._readouts[layer]

    def requirements_at(self, layer: int) -> dict[SiteKey, np.ndarray]:
        """Return (layer, site) -> sorted int64 indices the readout at `layer` reads."""
        self.readout(layer)
        return dict(self._plans[layer].requirements)

    def positions_at(self, layer: int) -> dict[SiteKey, np.ndarray]:
        """Return, per (layer, site), the readout position of each required index."""
        self.readout(layer)
        return dict(self._plans[layer].positions)

    def assemble_at(self, layer: int, acts: Mapping[SiteKey, np.ndarray]) -> np.ndarray:
        """Return values [B, m] in readout order from arrays read at requirements_at(layer)."""
        self.readout(layer)
        return self._plans[layer].assemble(acts)

    def predict_values(self, layer: int, values: np.ndarray) -> list[Prediction]:
        """Answer with the readout at `layer` from values [B, m] in readout order."""
        readout = self.readout(layer)
        winners, scores = readout.answer(values)
        final = layer == self.exit_layer
        return [Prediction(label=self.labels[w], label_index=int(w), labels=self.labels,
                           scores=tuple(float(s) for s in row), confidence=float(row[w]),
                           exit_layer=layer,
                           confident=final or bool(row[w] >= readout.min_confidence))
                for w, row in zip(winners.tolist(), scores)]

    def predict_at(self, layer: int, acts: Mapping[SiteKey, np.ndarray]) -> list[Prediction]:
        """Answer with the readout at `layer` from arrays [B, n] read at requirements_at."""
        return self.predict_values(layer, self.assemble_at(layer, acts))

    # --------------------------------------------------------------------- exit layer only

    @property
    def requirements(self) -> dict[SiteKey, np.ndarray]:
        """Return requirements_at(exit_layer)."""
        return self.requirements_at(self.exit_layer)

    @property
    def positions(self) -> dict[SiteKey, np.ndarray]:
        """Return positions_at(exit_layer)."""
        return self.positions_at(self.exit_layer)

    def assemble(self, acts: Mapping[SiteKey, np.ndarray]) -> np.ndarray:
        """Return assemble_at(exit_layer, acts)."""
        return self.assemble_at(self.exit_layer, acts)

    def predict(self, values: np.ndarray) -> list[Prediction]:
        """Answer at the exit layer from values [B, m] in profile neuron order."""
        return self.predict_values(self.exit_layer, values)

    def predict_from_sites(self, acts: Mapping[SiteKey, np.ndarray]) -> list[Prediction]:
        """Return predict_at(exit_layer, acts)."""
        return self.predict_at(self.exit_layer, acts)

    def votes(self, values: np.ndarray) -> np.ndarray:
        """Return each exit-layer neuron's vote [B, m] (vote readouts only)."""
        return self._readouts[self.exit_layer].votes(np.asarray(values, dtype=np.float64))


def _frozen(items: list[int]) -> np.ndarray:
    arr = np.asarray(items, dtype=np.int64)
    arr.setflags(write=False)
    return arr
