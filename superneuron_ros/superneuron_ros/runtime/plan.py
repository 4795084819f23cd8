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
What one call reads, and the anytime exit: each asked task answers at its first confident layer.

A :class:`CallPlan` is built from the tasks asked in a call only (unasked profiles cost nothing):
the union of the coordinates every readout of every asked task reads, per (layer, site); where
each readout's coordinates sit in that union; and the call's depth, the deepest exit layer among
the asked tasks. :class:`AnytimeExit` is the watcher the engine calls after each readout layer:
it asks every still-running task with a readout there for its answer, stops a task at its first
confident answer or at its exit layer, and stops the pass when every task has answered.
"""

import dataclasses
import time
from typing import Mapping, Protocol, Sequence

import numpy as np
from superneuron_ros.errors import SuperneuronError
from superneuron_ros.method.classifier import Prediction
from superneuron_ros.vlm.capture import Site
import torch


class TaskReadouts(Protocol):
    """The part of :class:`~superneuron_ros.method.classifier.SuperNeuronClassifier` used here."""

    layers: tuple[int, ...]
    exit_layer: int

    def requirements_at(self, layer: int) -> dict[Site, np.ndarray]:
        """(layer, site) -> sorted indices read by the readout at `layer`."""

    def predict_at(self, layer: int, acts: Mapping[Site, np.ndarray]) -> list[Prediction]:
        """Answer from arrays [B, n] read at exactly requirements_at(layer)."""


class CallPlan:
    """The reads and readouts of one call asking `names` (row k of the pass: names[k])."""

    def __init__(self, classifiers: Mapping[str, TaskReadouts], names: Sequence[str],
                 device: torch.device) -> None:
        """Plan the union of reads of the asked tasks and where each readout finds its values."""
        self.names = tuple(names)
        asked = {name: classifiers[name] for name in dict.fromkeys(self.names)}
        self.depth = max(classifier.exit_layer for classifier in asked.values())
        union: dict[Site, set[int]] = {}
        for classifier in asked.values():
            for layer in classifier.layers:
                for site, indices in classifier.requirements_at(layer).items():
                    union.setdefault(site, set()).update(int(i) for i in np.asarray(indices))
        sites = {site: torch.tensor(sorted(idx), dtype=torch.long) for site, idx in union.items()}
        self.sites = {site: idx.to(device) for site, idx in sites.items()}
        # (task, layer) -> site -> columns of that readout's coordinates among the union's.
        self.columns: dict[tuple[str, int], dict[Site, np.ndarray]] = {}
        for name, classifier in asked.items():
            for layer in classifier.layers:
                self.columns[(name, layer)] = {
                    site: torch.searchsorted(sites[site], torch.tensor(
                        np.asarray(indices, dtype=np.int64))).numpy()
                    for site, indices in classifier.requirements_at(layer).items()}
        # layer -> rows with a readout there
        self.readouts: dict[int, list[int]] = {}
        for row, name in enumerate(self.names):
            for layer in asked[name].layers:
                self.readouts.setdefault(layer, []).append(row)


class AnytimeExit:
    """The watcher of one call: answers tasks layer by layer, stops when all have answered."""

    def __init__(self, plan: CallPlan, classifiers: Mapping[str, TaskReadouts]) -> None:
        """Start a call: no task has answered yet."""
        self.plan = plan
        self.classifiers = classifiers
        self.answers: list[Prediction | None] = [None] * len(plan.names)
        self.seconds = 0.0  # time spent in readouts (reported as classify time)

    def __call__(self, layer: int, values: Mapping[Site, torch.Tensor]) -> bool:
        """Answer every running task with a readout at `layer`; return True when all answered."""
        started = time.perf_counter()
        for row in self.plan.readouts.get(layer, ()):
            if self.answers[row] is not None:
                continue
            name = self.plan.names[row]
            classifier = self.classifiers[name]
            acts = {site: values[site][row:row + 1, columns].numpy()  # [1, n]
                    for site, columns in self.plan.columns[(name, layer)].items()}
            prediction = classifier.predict_at(layer, acts)[0]
            if prediction.confident or layer >= classifier.exit_layer:
                if prediction.exit_layer != layer:
                    prediction = dataclasses.replace(prediction, exit_layer=layer)
                self.answers[row] = prediction
        self.seconds += time.perf_counter() - started
        return all(answer is not None for answer in self.answers)

    def predictions(self) -> tuple[Prediction, ...]:
        """Return the answers in the order asked (every task must have answered)."""
        missing = [self.plan.names[row] for row, a in enumerate(self.answers) if a is None]
        if missing:
            raise SuperneuronError(f'task(s) {missing} got no answer: the pass stopped before '
                                   'their exit layer; this is a bug, please report it')
        return tuple(self.answers)
