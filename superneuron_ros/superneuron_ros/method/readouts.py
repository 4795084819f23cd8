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
Readouts: m scalar activations -> calibrated probabilities over the labels of a task.

Three kinds, all closed-form at run time (numpy only):

- ``stump``: each scalar is a threshold with a polarity (binary tasks); the scalars vote;
- ``means``: each scalar votes for the label whose 1-D class mean is nearest (any task);
- ``linear``: multinomial logistic regression over the standardised scalars, one m x C product
  and a softmax at temperature ``temperature``.

Vote shares become probabilities through an optional calibration table: the winning share is
mapped to the accuracy that share had out of fold (``share_points`` -> ``share_accuracy``, linear
interpolation, monotone); the other labels split the rest in proportion to their shares. Without
a table (format-1 profiles) the raw shares are the scores, as before. Exact ties between vote
shares are broken by the summed signed margin (how far past its threshold, or how close to each
class mean, each scalar lies, in units of the spread of its class means), then by label order.

``min_confidence`` is the anytime threshold: at a layer before the exit, an answer whose
confidence reaches it is final (0.0 at the exit layer: always final).
"""

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
from superneuron_ros.errors import DataError, ProfileError

KINDS = ('stump', 'means', 'linear')
NEURON_ARRAYS = {'layer': np.int32, 'site': np.int8, 'index': np.int64}
PARAMETERS = {  # per kind: array name -> (dtype, shape code); m neurons, C labels
    'stump': {'threshold': (np.float32, 'm'), 'polarity': (np.int8, 'm'),
              'means': (np.float32, 'mC'), 'weight': (np.float32, 'm')},
    'means': {'means': (np.float32, 'mC'), 'weight': (np.float32, 'm')},
    'linear': {'center': (np.float32, 'm'), 'scale': (np.float32, 'm'),
               'coef': (np.float32, 'mC'), 'intercept': (np.float32, 'C')},
}
CALIBRATION = {'share_points': (np.float32, 'b'), 'share_accuracy': (np.float32, 'b')}
VOTE_KINDS = ('stump', 'means')
CONSTANT_THRESHOLD = float(np.finfo(np.float32).min)  # a stump without a split: always above


def _frozen(value: Any, dtype: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    kind = np.dtype(dtype).kind
    if arr.size and kind == 'i' and arr.dtype.kind not in 'iu':
        raise ProfileError(f'readout array {name} must hold integers, got {arr.dtype}')
    if arr.size and kind == 'f' and arr.dtype.kind not in 'iuf':
        raise ProfileError(f'readout array {name} must hold numbers, got {arr.dtype}')
    arr = np.array(arr, dtype=dtype)  # a private copy
    arr.setflags(write=False)
    return arr


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ProfileError(f'{name} must be a finite number, got {value!r}')
    return float(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Readout:
    """The classifier that answers after decoder layer ``layer`` from m scalars of layers <= it."""

    layer: int
    kind: str
    neuron_layer: np.ndarray  # [m] int32, each <= layer
    site: np.ndarray  # [m] int8, index into SITES
    index: np.ndarray  # [m] int64
    params: Mapping[str, np.ndarray]  # PARAMETERS[kind] (+ CALIBRATION for votes)
    num_labels: int
    temperature: float = 1.0  # linear: softmax temperature fitted out of fold
    min_confidence: float = 0.0  # anytime threshold; 0.0: always final

    def __post_init__(self) -> None:
        """Coerce the arrays and check shapes and values; raise ProfileError."""
        if self.kind not in KINDS:
            raise ProfileError(f'readout kind must be one of {KINDS}, got {self.kind!r}')
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)) \
                or self.layer < 0:
            raise ProfileError(f'readout layer must be an integer >= 0, got {self.layer!r}')
        object.__setattr__(self, 'layer', int(self.layer))
        for name, dtype in NEURON_ARRAYS.items():
            attr = 'neuron_layer' if name == 'layer' else name
            object.__setattr__(self, attr, _frozen(getattr(self, attr), dtype, name))
        m, c = int(self.index.shape[0]) if self.index.ndim == 1 else -1, int(self.num_labels)
        if m < 1 or self.neuron_layer.shape != (m,) or self.site.shape != (m,):
            raise ProfileError(f'readout at layer {self.layer}: neuron arrays must be [m >= 1], '
                               f'got {self.neuron_layer.shape}, {self.site.shape}, '
                               f'{self.index.shape}')
        if (self.neuron_layer < 0).any() or (self.neuron_layer > self.layer).any():
            raise ProfileError(f'readout at layer {self.layer} reads layers '
                               f'{sorted(set(self.neuron_layer.tolist()))}; it can only read '
                               f'layers 0..{self.layer}')
        if len(set(zip(self.neuron_layer.tolist(), self.site.tolist(),
                       self.index.tolist()))) != m:
            raise ProfileError(f'readout at layer {self.layer} lists a neuron twice')
        if self.kind == 'stump' and c != 2:
            raise ProfileError(f'a stump readout needs exactly 2 labels, got {c}')
        spec = dict(PARAMETERS[self.kind])
        if self.kind in VOTE_KINDS and 'share_points' in self.params:
            spec.update(CALIBRATION)
        unknown = set(self.params) - set(spec)
        missing = set(spec) - set(self.params)
        if unknown or missing:
            raise ProfileError(f'a {self.kind} readout holds arrays {sorted(self.params)}; '
                               f'expected {sorted(spec)}')
        shapes = {'m': (m,), 'mC': (m, c), 'C': (c,)}
        params = {}
        for name, (dtype, code) in spec.items():
            arr = _frozen(self.params[name], dtype, name)
            want = shapes.get(code, (arr.shape[0],) if arr.ndim == 1 else None)
            if arr.shape != want:
                raise ProfileError(f'readout at layer {self.layer}: {name} has shape {arr.shape}, '
                                   f'expected {want}')
            params[name] = arr
        object.__setattr__(self, 'params', params)
        object.__setattr__(self, 'temperature', _finite_number(self.temperature, 'temperature'))
        object.__setattr__(self, 'min_confidence',
                           _finite_number(self.min_confidence, 'min_confidence'))
        self._check_values()

    def _check_values(self) -> None:
        p = self.params
        finite = [name for name, arr in p.items()
                  if arr.dtype.kind == 'f' and not (self.kind == 'stump' and name == 'means')
                  and not np.isfinite(arr).all()]
        if finite:
            raise ProfileError(f'readout at layer {self.layer}: {finite} must be finite (no NaN '
                               'or infinity); recalibrate with `superneuron calibrate`')
        if self.kind == 'stump' and not np.isin(p['polarity'], (-1, 1)).all():
            raise ProfileError('stump polarities must be +1 or -1')
        if 'weight' in p and ((p['weight'] < 0).any() or float(p['weight'].sum()) <= 0):
            raise ProfileError('vote weights must be non-negative and not all zero')
        if self.kind == 'linear' and (p['scale'] <= 0).any():
            raise ProfileError('linear readout scales must be positive')
        if self.temperature <= 0:
            raise ProfileError(f'temperature must be positive, got {self.temperature}')
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ProfileError(f'min_confidence must lie in [0, 1], got {self.min_confidence}')
        if 'share_points' in p:
            points, acc = p['share_points'], p['share_accuracy']
            if points.size < 1 or (np.diff(points) <= 0).any() or (np.diff(acc) < 0).any() \
                    or (acc < 0).any() or (acc > 1).any():
                raise ProfileError('the vote calibration table must have increasing share '
                                   'points and non-decreasing accuracies in [0, 1]')

    @property
    def num_neurons(self) -> int:
        """Return m, the number of scalars this readout reads."""
        return int(self.index.shape[0])

    # --------------------------------------------------------------------- answering

    def votes(self, values: np.ndarray) -> np.ndarray:
        """Return each scalar's answer [B, m] (label indices) for values [B, m] (votes only)."""
        p = self.params
        if self.kind == 'stump':
            above = values > p['threshold'].astype(np.float64)[None, :]
            return np.where(p['polarity'][None, :] > 0, above, ~above).astype(np.int64)
        if self.kind == 'means':
            dist = np.abs(values[:, :, None] - p['means'].astype(np.float64)[None, :, :])
            return np.argmin(dist, axis=2)  # first minimum: ties go to the lower label
        raise DataError('a linear readout does not vote')

    def margins(self, values: np.ndarray) -> np.ndarray:
        """Return the vote tie-break score [B, C] of each label: the summed scaled margin."""
        p = self.params
        means = p['means'].astype(np.float64)  # [m, C]
        known = np.isfinite(means)
        spread = np.where(known, means, -np.inf).max(axis=1) \
            - np.where(known, means, np.inf).min(axis=1)  # [m]
        scale = np.where(spread > 0, spread, 1.0)
        weight = p['weight'].astype(np.float64)
        if self.kind == 'stump':
            threshold = p['threshold'].astype(np.float64)
            split = threshold > CONSTANT_THRESHOLD  # a constant stump has no margin
            gap = np.where(split[None, :], values - np.where(split, threshold, 0.0)[None, :], 0.0)
            toward_1 = (gap * p['polarity'] / scale * weight).sum(axis=1)  # [B]
            return np.stack([-toward_1, toward_1], axis=1)
        dist = np.abs(values[:, :, None] - means[None, :, :])  # [B, m, C]
        return -np.einsum('bmc,m->bc', dist, weight / scale)

    def shares(self, values: np.ndarray) -> np.ndarray:
        """Return the weighted vote shares [B, C] (rows sum to 1) of values [B, m]."""
        votes = self.votes(values)
        onehot = votes[:, :, None] == np.arange(self.num_labels)[None, None, :]  # [B, m, C]
        weight = self.params['weight'].astype(np.float64)
        return np.einsum('bmc,m->bc', onehot.astype(np.float64), weight) / weight.sum()

    def logits(self, values: np.ndarray) -> np.ndarray:
        """Return the linear readout's logits [B, C] before the temperature."""
        p = self.params
        z = (values - p['center'].astype(np.float64)) / p['scale'].astype(np.float64)
        return z @ p['coef'].astype(np.float64) + p['intercept'].astype(np.float64)

    def answer(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the winning label [B] and the calibrated scores [B, C] for values [B, m]."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.num_neurons:
            raise DataError(f'values must be [batch, {self.num_neurons}] in readout order, got '
                            f'shape {values.shape}')
        if not np.isfinite(values).all():
            raise DataError('activations contain NaN or infinity; check the model compute dtype '
                            '(float16 overflow) and the input image')
        if self.kind == 'linear':
            scores = softmax(self.logits(values) / self.temperature)
            return np.argmax(scores, axis=1), scores
        shares = self.shares(values)
        winners = argmax_with_tiebreak(shares, self.margins(values))
        if 'share_points' not in self.params:
            return winners, shares
        return winners, calibrate_shares(shares, winners, self.params['share_points'],
                                         self.params['share_accuracy'])


def softmax(z: np.ndarray) -> np.ndarray:
    """Return the row-wise softmax [B, C] of z [B, C]."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def argmax_with_tiebreak(shares: np.ndarray, tiebreak: np.ndarray,
                         atol: float = 1e-9) -> np.ndarray:
    """
    Return the winning class [B] of shares [B, C].

    Classes within ``atol`` of the best share are tied; among them the highest ``tiebreak``
    [B, C] wins, and then the lowest class index.
    """
    best = shares.max(axis=1, keepdims=True)
    tied = shares >= best - atol
    tiebreak = np.nan_to_num(tiebreak, nan=0.0, posinf=1e300, neginf=-1e300)
    return np.argmax(np.where(tied, tiebreak, -np.inf), axis=1)


def calibrate_shares(shares: np.ndarray, winners: np.ndarray, points: np.ndarray,
                     accuracy: np.ndarray) -> np.ndarray:
    """
    Map vote shares [B, C] to probabilities with a share -> accuracy table.

    The winner's probability is its share's out-of-fold accuracy (interpolated); the other labels
    split the remainder in proportion to their shares (evenly when they got no vote).
    """
    rows = np.arange(shares.shape[0])
    top = shares[rows, winners]
    p = np.interp(top, points.astype(np.float64), accuracy.astype(np.float64))
    rest = shares.copy()
    rest[rows, winners] = 0.0
    total = rest.sum(axis=1, keepdims=True)
    others = shares.shape[1] - 1
    even = np.where(np.arange(shares.shape[1])[None, :] == winners[:, None], 0.0, 1.0 / others)
    split = np.where(total > 0, rest / np.where(total > 0, total, 1.0), even)
    scores = split * (1.0 - p)[:, None]
    scores[rows, winners] = p
    return scores
