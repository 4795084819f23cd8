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
From out-of-fold answers to choices: readout per layer, exit layer, probabilities, anytime exits.

Every figure here comes from the out-of-fold answers of :mod:`superneuron_ros.method.crossval`:

- per layer and readout, the mean and standard deviation of the per-fold scores;
- per layer, the readout with the better mean (vote or linear; the vote wins ties), unless fixed;
- the exit layer: the shallowest whose mean is within ``tolerance`` of the best layer's mean;
- probabilities: the linear readout's softmax temperature and the vote's share -> accuracy table
  are fitted on the pooled out-of-fold answers; the expected calibration error and the anytime
  thresholds use cross-fitted confidences (each fold mapped by the other folds' fit);
- anytime thresholds: layer by layer before the exit, among the answers no earlier layer took,
  the lowest confidence above which this layer's out-of-fold answers are at least as accurate
  as the exit layer's on the same answers, minus ``tolerance`` (and at least ``min_count`` of
  them); the cascade is then replayed out of fold to report its accuracy and the mean number
  of decoder layers it runs.
"""

import dataclasses
from typing import Any, Sequence

import numpy as np
from superneuron_ros.method.crossval import OutOfFold
from superneuron_ros.method.linear import (expected_calibration_error, fit_temperature,
                                           isotonic_table)
from superneuron_ros.method.readouts import softmax

READOUTS = ('auto', 'vote', 'linear')


@dataclasses.dataclass
class LayerAnswers:
    """The calibrated out-of-fold answers [R, N] of one layer's chosen readout."""

    kind: str  # 'vote' or 'linear'
    pred: np.ndarray
    confidence: np.ndarray
    temperature: float
    table: tuple[np.ndarray, np.ndarray] | None  # vote share -> accuracy


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {'mean': float(arr.mean()), 'std': float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            'folds': int(arr.size)}


def _fit_map(kind: str, raw: np.ndarray, pred: np.ndarray, y: np.ndarray) -> Any:
    """Fit the probability map of pooled answers: a temperature (linear) or a share table."""
    if kind == 'linear':
        return fit_temperature(raw, y)
    return isotonic_table(raw, pred == y)


def _apply_map(kind: str, mapping: Any, raw: np.ndarray) -> np.ndarray:
    """Return the confidence of each answer under a fitted map."""
    if kind == 'linear':
        return softmax(raw / mapping).max(axis=1)
    return np.interp(raw, *mapping)


def calibrated(oof: OutOfFold, y: np.ndarray, layer: int, kind: str) -> LayerAnswers:
    """
    Return the calibrated out-of-fold answers of `kind` at `layer`.

    The map kept for the profile is fitted on every out-of-fold answer. The confidences returned
    (used for the ECE and the anytime thresholds) are cross-fitted: each fold's answers are
    mapped by a map fitted on the other folds' answers, so no answer calibrates itself.
    """
    repeats, n = oof.winners[layer].shape
    truth = np.tile(y, repeats)
    if kind == 'linear':
        logits = oof.logits[(layer, 'auto')]  # [R, N, C]
        raw = logits.reshape(-1, logits.shape[-1])
        pred = raw.argmax(axis=1)
    else:
        pred = oof.winners[layer].reshape(-1)
        raw = np.take_along_axis(oof.shares[layer].reshape(-1, oof.shares[layer].shape[-1]),
                                 pred[:, None], axis=1)[:, 0]
    mapping = _fit_map(kind, raw, pred, truth)
    fold = oof.fold_ids.reshape(-1)
    confidence = np.empty(len(truth))
    for f in np.unique(fold):
        inside = fold == f
        held = _fit_map(kind, raw[~inside], pred[~inside], truth[~inside])
        confidence[inside] = _apply_map(kind, held, raw[inside])
    shape = (repeats, n)
    return LayerAnswers(kind, pred.reshape(shape), confidence.reshape(shape),
                        mapping if kind == 'linear' else 1.0,
                        None if kind == 'linear' else mapping)


def anytime_threshold(answers: LayerAnswers, final: LayerAnswers, y: np.ndarray,
                      open_: np.ndarray, tolerance: float, min_count: int) -> float | None:
    """
    Return the lowest confidence above which this layer's answers are as good as the exit's.

    Among the still open answers (``open_`` [R, N]) at or above the threshold, this layer's
    accuracy must be at least the exit layer's accuracy on the same answers minus
    ``tolerance``, and at least ``min_count`` answers must qualify; None when no threshold does.
    """
    conf = answers.confidence[open_]
    mine = (answers.pred == y[None, :])[open_].astype(np.float64)
    theirs = (final.pred == y[None, :])[open_].astype(np.float64)
    order = np.argsort(-conf, kind='stable')
    conf, mine, theirs = conf[order], mine[order], theirs[order]
    count = np.arange(1, conf.size + 1)
    last = np.r_[conf[1:] != conf[:-1], True]  # ends of groups of equal confidence
    ok = last & (np.cumsum(mine) >= np.cumsum(theirs) - tolerance * count - 1e-9) \
        & (count >= min_count)
    if not ok.any():
        return None
    return float(conf[np.flatnonzero(ok)[-1]])


def replay(chain: Sequence[tuple[int, LayerAnswers, float]], exit_layer: int,
           final: LayerAnswers, y: np.ndarray) -> dict[str, Any]:
    """Replay an anytime cascade out of fold: accuracy, mean layers run and ECE."""
    pred = final.pred.copy()
    conf = final.confidence.copy()
    layers_run = np.full(pred.shape, exit_layer + 1, dtype=np.float64)
    open_ = np.ones(pred.shape, dtype=bool)
    for layer, answers, threshold in chain:
        take = open_ & (answers.confidence >= threshold)
        pred[take] = answers.pred[take]
        conf[take] = answers.confidence[take]
        layers_run[take] = layer + 1
        open_ &= ~take
    correct = pred == y[None, :]
    return {'accuracy': float(correct.mean()), 'accuracy_std_over_repeats':
            float(correct.mean(axis=1).std()), 'mean_layers': float(layers_run.mean()),
            'ece': expected_calibration_error(conf, correct)['ece'],
            'thresholds': {str(layer): t for layer, _, t in chain}}


@dataclasses.dataclass
class Selection:
    """What the out-of-fold answers chose."""

    per_layer: list[dict[str, Any]]
    best_layer: int
    exit_layer: int
    answers: dict[int, LayerAnswers]  # the chosen readout's calibrated answers per layer
    thresholds: dict[int, float]  # anytime layers before the exit -> min confidence
    anytime: dict[str, Any]
    reliability: dict[str, Any]  # the exit readout's reliability bins


def select(oof: OutOfFold, y: np.ndarray, sizes: Sequence[int], readout: str,
           exit_layer: int | None, tolerance: float, min_count: int = 10) -> Selection:
    """Choose readouts, the exit layer and anytime thresholds (module doc)."""
    layers = sorted(oof.winners)
    per_layer, answers = [], {}
    for layer in layers:
        entry: dict[str, Any] = {'layer': layer, 'readouts': {}}
        for name in ('vote', 'linear', *[f'm{m}' for m in sizes], 'ceiling'):
            if (layer, name) in oof.fold_scores:
                entry['readouts'][name] = _mean_std(oof.fold_scores[(layer, name)])
        entry['linear_m_chosen'] = {str(m): oof.chosen_m[layer].count(m)
                                    for m in sorted(set(oof.chosen_m[layer]))}
        both = {kind: calibrated(oof, y, layer, kind) for kind in ('vote', 'linear')}
        for kind, a in both.items():
            rel = expected_calibration_error(a.confidence, a.pred == y[None, :])
            entry['readouts'][kind]['ece'] = rel['ece']
        means = {kind: entry['readouts'][kind]['mean'] for kind in both}
        kind = readout if readout != 'auto' else (
            'linear' if means['linear'] > means['vote'] + 1e-12 else 'vote')
        entry['chosen'] = kind
        entry['selection'] = means[kind]
        entry['selection_std'] = entry['readouts'][kind]['std']
        entry['temperature'] = both['linear'].temperature
        answers[layer] = both[kind]
        per_layer.append(entry)
    scores = [entry['selection'] for entry in per_layer]
    best = int(np.argmax(scores))
    exit_ = exit_layer if exit_layer is not None else next(
        la for la, s in zip(layers, scores) if s >= scores[best] - tolerance - 1e-12)
    final = answers[exit_]
    thresholds, chain = {}, []
    open_ = np.ones(final.pred.shape, dtype=bool)
    for layer in [la for la in layers if la < exit_]:
        t = anytime_threshold(answers[layer], final, y, open_, tolerance, min_count)
        per_layer[layers.index(layer)]['anytime_threshold'] = t
        if t is not None:
            thresholds[layer] = t
            chain.append((layer, answers[layer], t))
            open_ &= answers[layer].confidence < t
    anytime = replay(chain, exit_, final, y)
    reliability = expected_calibration_error(final.confidence, final.pred == y[None, :])
    return Selection(per_layer, layers[best], exit_, answers, thresholds, anytime, reliability)
