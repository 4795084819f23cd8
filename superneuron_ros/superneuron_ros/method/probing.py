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
Per-scalar classifiers: decision stumps and 1-D nearest class means, folds, ranking.

Every candidate scalar activation (one coordinate of one site at one decoder layer) is its own
classifier. Everything here is vectorised over the scalar dimension D and processed in chunks of
columns, so memory stays bounded: inputs may be float16, values are compared in float32, counts
are exact (unit weights) and scores are rounded to 12 decimals, so two scalars with the same
number of correct answers get identical scores and ties are broken by index, deterministically.

Conventions: ``x`` is [N, D] (samples x scalars), ``y`` is [N] long in ``0..C-1``. A stump with
polarity +1 predicts class 1 where ``value > threshold`` and class 0 elsewhere; polarity -1
predicts the reverse (class 1 where ``value <= threshold``). A stump that found no useful split
is constant and has threshold ``CONSTANT_THRESHOLD`` (the lowest float32: always above).
"""

import dataclasses
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.method.readouts import CONSTANT_THRESHOLD
from superneuron_ros.vlm.capture import SITES  # a site's code in a profile is its position
import torch

METRICS = ('accuracy', 'balanced')
DEFAULT_CHUNK_ELEMENTS = 1 << 21  # values of one [columns, samples] block (~8 MiB as float32)


@dataclasses.dataclass(frozen=True)
class StumpFit:
    """Decision stumps for D scalars: one threshold and one polarity each."""

    threshold: torch.Tensor  # [D] float32
    polarity: torch.Tensor  # [D] int8, +1 or -1
    train_accuracy: torch.Tensor  # [D] float64, on the data the stumps were fitted on


# ----------------------------------------------------------------------------- input checks


def _as_tensor(a: 'torch.Tensor | np.ndarray') -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    arr = np.asarray(a)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _check_x(x: 'torch.Tensor | np.ndarray', name: str = 'x') -> torch.Tensor:
    x = _as_tensor(x)
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise DataError(f'{name} must be a non-empty [samples, scalars] matrix, got shape '
                        f'{tuple(x.shape)}; stack one row of activations per sample')
    if not x.is_floating_point():
        x = x.float()
    return x


def _check_y(y: 'torch.Tensor | np.ndarray', n: int, num_classes: int) -> torch.Tensor:
    y = _as_tensor(y)
    if y.dim() != 1 or y.shape[0] != n:
        raise DataError(f'labels must be a vector of {n} class indices (one per sample), got '
                        f'shape {tuple(y.shape)}')
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError('labels must be integer class indices, not floats or booleans')
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f'labels must lie in 0..{num_classes - 1}; got values from {int(y.min())} '
                        f'to {int(y.max())}; map each label name to its index in the task')
    return y


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise DataError(f'unknown metric {metric!r}; use one of {METRICS}')


def _unit_weights(sample_weight: 'torch.Tensor | np.ndarray | None', n: int) -> torch.Tensor:
    if sample_weight is None:
        return torch.ones(n, dtype=torch.float64)
    w = _as_tensor(sample_weight).to(torch.float64)
    if w.dim() != 1 or w.shape[0] != n:
        raise DataError(f'sample weights must be a vector of {n} values, got {tuple(w.shape)}')
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise DataError('sample weights must be finite, non-negative and not all zero')
    return w


def _class_factors(y: torch.Tensor, w: torch.Tensor, num_classes: int,
                   metric: str) -> torch.Tensor:
    """Return a [C] float64 factor a_c: score = sum_c a_c * (weight correctly answered in c)."""
    totals = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, y, w)  # [C]
    if float(totals.sum()) <= 0:
        raise DataError('a fold holds no sample with a positive weight; give weights > 0 or use '
                        'fewer folds')
    if metric == 'accuracy':
        return torch.full((num_classes,), 1.0 / float(totals.sum()), dtype=torch.float64)
    present = totals > 0
    factors = torch.zeros(num_classes, dtype=torch.float64)
    factors[present] = 1.0 / (totals[present] * int(present.sum()))
    return factors


def _column_chunks(num_columns: int, rows: int, max_elements: int) -> Iterator[slice]:
    step = max(1, int(max_elements) // max(1, rows))
    for start in range(0, num_columns, step):
        yield slice(start, min(num_columns, start + step))


def _chunk_t(x: torch.Tensor, cols: slice) -> torch.Tensor:
    """Return columns ``cols`` of x as a contiguous float32 [d, N] block, refusing NaN."""
    xt = torch.empty((cols.stop - cols.start, x.shape[0]), dtype=torch.float32)  # [d, N]
    xt.copy_(x[:, cols].T)
    bad = torch.isnan(xt).any(dim=1)
    if bool(bad.any()):
        column = cols.start + int(bad.nonzero()[0, 0])
        raise DataError(f'activation column {column} contains NaN; check the model compute dtype '
                        '(float16 overflow) and the inputs')
    return xt


def _sort_rows(xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Sort each row of a float32 [d, N] block; return values and sample order, both [d, N].

    numpy's vectorised argsort is about twice as fast as torch.sort on CPU. The order among equal
    values does not matter: splits are only made between distinct values.
    """
    order = torch.from_numpy(np.argsort(xt.numpy(), axis=1))  # [d, N] int64
    return torch.gather(xt, 1, order), order


def _score(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor, factors: torch.Tensor,
           num_classes: int) -> torch.Tensor:
    """Weighted (balanced) accuracy of each row of pred [d, m] against y [m]; returns [d]."""
    correct = pred == y[None, :]  # [d, m]
    score = torch.zeros(pred.shape[0], dtype=torch.float64)
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        if members.numel() == 0 or float(factors[c]) == 0.0:
            continue
        hits = correct[:, members].to(torch.float64) @ w[members]  # [d], exact for unit weights
        score += hits * factors[c]
    return score


# ----------------------------------------------------------------------------- stumps


def _stump_credits(y: torch.Tensor, w: torch.Tensor | None, train: torch.Tensor,
                   metric: str) -> tuple[torch.Tensor, float, float]:
    """
    Return signed credits s [N] and the class-0 / class-1 credit totals of the training part.

    A correctly answered training sample of class c adds its credit u to the score; s is +u for
    class 0, -u for class 1 and 0 outside the training part (zero-credit samples are ignored), so
    the score of a split with class 1 above it is U1 + (sum of s below it). With unit weights the
    credits are integers (accuracy: 1; balanced: the other class's count), so sums are exact.
    """
    is0 = (y == 0) & train  # [N]
    is1 = (y == 1) & train
    if w is None:
        n0, n1 = int(is0.sum()), int(is1.sum())
        f0, f1 = (float(n1), float(n0)) if metric == 'balanced' and n0 and n1 else (1.0, 1.0)
        u = is0.to(torch.float64) * f0 + is1.to(torch.float64) * f1  # [N]
    else:
        w0, w1 = float(w[is0].sum()), float(w[is1].sum())
        if metric == 'balanced' and w0 > 0 and w1 > 0:
            f0, f1 = 0.5 / w0, 0.5 / w1
        else:
            f0 = f1 = 1.0 / (w0 + w1) if w0 + w1 > 0 else 0.0
        u = w * (is0.to(torch.float64) * f0 + is1.to(torch.float64) * f1)
    u0, u1 = float(u[is0].sum()), float(u[is1].sum())
    exact32 = w is None and 2 * (u0 + u1) < 2 ** 24
    s = torch.where(y == 0, u, -u).to(torch.float32 if exact32 else torch.float64)
    return s, u0, u1


def _fit_sorted(vals: torch.Tensor, order: torch.Tensor, valid: torch.Tensor, s: torch.Tensor,
                u0: float, u1: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Fit one stump per row of column-sorted values.

    vals [d, N] ascending per row, order [d, N] the sample of each sorted position, valid [d, N-1]
    1.0 where sorted positions i and i+1 hold distinct values (else 0.0), s [N] the credits of
    ``_stump_credits``. The split after position i is scored from the cumulative credits; the best
    valid split wins over the constant stump only when strictly better (then the lowest one among
    equals), and its threshold lies midway between the nearest training values on either side.
    Returns threshold [d] float32, polarity [d] int8 and training score [d] float64.
    """
    d, n = vals.shape
    offset = (u1 - u0) / 2  # signed margin of the constant stump
    const_pol = 1 if offset >= 0 else -1
    threshold = torch.full((d,), CONSTANT_THRESHOLD, dtype=torch.float32)
    polarity = torch.full((d,), const_pol, dtype=torch.int8)
    margin_best = torch.full((d,), abs(offset), dtype=torch.float64)
    if n > 1:
        s_sorted = torch.gather(s[None, :].expand(d, n), 1, order)  # [d, N]
        cs = torch.cumsum(s_sorted, dim=1)[:, :-1]  # [d, N-1] credits at or below position i
        margin = (cs + offset).abs_().mul_(valid)  # [d, N-1], 0 where invalid
        j = torch.argmax(margin, dim=1, keepdim=True)  # [d, 1] first best split
        best = margin.gather(1, j)  # [d, 1]
        member = (s != 0).to(torch.int32)[None, :].expand(d, n)  # [d, N]
        ct = torch.gather(member, 1, order).cumsum_(dim=1)  # [d, N] training samples so far
        r = ct.gather(1, j)  # [d, 1] training samples at or below the split
        split = ((best > abs(offset)) & (r > 0) & (r < ct[:, -1:])).squeeze(1)  # [d]
        lo = vals.gather(1, torch.searchsorted(ct, r).clamp_(max=n - 1)).squeeze(1)
        hi = vals.gather(1, torch.searchsorted(ct, r + 1).clamp_(max=n - 1)).squeeze(1)
        mid = lo * 0.5 + hi * 0.5
        mid = torch.where(mid >= hi, lo, mid)  # rounding must keep lo <= threshold < hi
        signed = (cs.gather(1, j) + offset).squeeze(1)
        threshold = torch.where(split, mid, threshold)
        polarity = torch.where(split, torch.where(signed >= 0, 1, -1).to(torch.int8), polarity)
        margin_best = torch.where(split, best.squeeze(1).to(torch.float64), margin_best)
    total = u0 + u1
    score = (total / 2 + margin_best) / total if total > 0 else torch.zeros(d, dtype=torch.float64)
    return threshold, polarity, _tidy(score)


def _tidy(score: torch.Tensor) -> torch.Tensor:
    """Round scores to 12 decimals so equal fractions summed in another order compare equal."""
    return torch.round(score.to(torch.float64), decimals=12)


def _predict_stumps_t(xt: torch.Tensor, threshold: torch.Tensor,
                      polarity: torch.Tensor) -> torch.Tensor:
    """Predict from a [d, m] block; returns [d, m] long."""
    above = xt > threshold[:, None]
    return torch.where(polarity[:, None] > 0, above, ~above).long()


def fit_stumps(x: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None = None,
               metric: str = 'accuracy',
               chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> StumpFit:
    """
    Fit the best decision stump of each column of x [N, D] to binary labels y [N].

    The split is exact, in closed form: each column is sorted once and the (weighted, or with
    ``metric='balanced'`` class-balanced) accuracy of every split between two consecutive distinct
    values is read off cumulative sums. The constant stump wins ties; among equally good splits
    the lowest wins. Thresholds lie midway between the two values around the split.
    """
    _check_metric(metric)
    x = _check_x(x)
    n, num_columns = x.shape
    y = _check_y(y, n, 2)
    w = None if sample_weight is None else _unit_weights(sample_weight, n)
    s, u0, u1 = _stump_credits(y, w, torch.ones(n, dtype=torch.bool), metric)
    thresholds, polarities, accuracies = [], [], []
    for cols in _column_chunks(num_columns, n, chunk_elements):
        vals, order = _sort_rows(_chunk_t(x, cols))  # [d, N]
        valid = (vals[:, 1:] > vals[:, :-1]).to(torch.float32)  # [d, N-1] distinct
        fit = _fit_sorted(vals, order, valid, s, u0, u1)
        thresholds.append(fit[0])
        polarities.append(fit[1])
        accuracies.append(fit[2])
    return StumpFit(torch.cat(thresholds), torch.cat(polarities), torch.cat(accuracies))


def predict_stumps(x: torch.Tensor, fit: StumpFit,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Predict classes [M, D] long from x [M, D], one stump per column."""
    x = _check_x(x)
    if x.shape[1] != fit.threshold.shape[0]:
        raise DataError(f'x has {x.shape[1]} columns but the stumps were fitted on '
                        f'{fit.threshold.shape[0]}')
    out = torch.empty(x.shape, dtype=torch.long)
    for cols in _column_chunks(x.shape[1], x.shape[0], chunk_elements):
        xt = x[:, cols].T.to(torch.float32)  # [d, M]
        out[:, cols] = _predict_stumps_t(xt, fit.threshold[cols], fit.polarity[cols]).T
    return out


# ----------------------------------------------------------------------------- class means


def _fit_means_t(xt: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                 num_classes: int) -> torch.Tensor:
    """Weighted class means of a [d, n] block; returns [d, C] float32."""
    means = torch.empty((xt.shape[0], num_classes), dtype=torch.float32)
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        total = float(w[members].sum()) if members.numel() else 0.0
        if total <= 0:
            raise DataError(f'class {c} has no examples to average; every class needs examples '
                            'in the probing data (and in every training fold)')
        weights = (w[members] / total).to(torch.float32)  # [n_c]
        means[:, c] = (xt[:, members] * weights[None, :]).sum(dim=1)
    return means


def _predict_means_t(xt: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Nearest class mean of each value of a [d, m] block given means [d, C]; returns [d, m]."""
    best = torch.full(xt.shape, float('inf'))
    pred = torch.zeros(xt.shape, dtype=torch.long)
    for c in range(means.shape[1]):
        dist = (xt - means[:, c:c + 1]).abs()  # [d, m]
        closer = dist < best  # strict: ties go to the lowest class index
        pred = torch.where(closer, c, pred)
        best = torch.where(closer, dist, best)
    return pred


def fit_means(x: torch.Tensor, y: torch.Tensor, num_classes: int,
              sample_weight: torch.Tensor | None = None,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Return the (weighted) mean of each class in each column of x [N, D]: [C, D] float32."""
    x = _check_x(x)
    n, num_columns = x.shape
    y = _check_y(y, n, num_classes)
    w = _unit_weights(sample_weight, n)
    means = torch.empty((num_classes, num_columns), dtype=torch.float32)
    for cols in _column_chunks(num_columns, n, chunk_elements):
        means[:, cols] = _fit_means_t(_chunk_t(x, cols), y, w, num_classes).T
    return means


def predict_means(x: torch.Tensor, means: torch.Tensor,
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Predict [M, D] long: per column, the class with the nearest 1-D mean (ties: lowest)."""
    x = _check_x(x)
    means = _as_tensor(means).to(torch.float32)
    if means.dim() != 2 or means.shape[1] != x.shape[1]:
        raise DataError(f'means must be [classes, {x.shape[1]}], got {tuple(means.shape)}')
    out = torch.empty(x.shape, dtype=torch.long)
    for cols in _column_chunks(x.shape[1], x.shape[0] * means.shape[0], chunk_elements):
        xt = x[:, cols].T.to(torch.float32)  # [d, M]
        out[:, cols] = _predict_means_t(xt, means[:, cols].T.contiguous()).T
    return out


# ----------------------------------------------------------------------------- naming scalars


class Neuron(NamedTuple):
    """One candidate scalar: a coordinate of one site at one decoder layer."""

    layer: int
    site: str
    index: int


class NeuronSet:
    """
    Ordered blocks of candidate scalars, one block per (layer, site), with global positions.

    Position p of the concatenated columns maps back to ``(layer, site, index)``; blocks are kept
    in the order given.
    """

    def __init__(self, blocks: Sequence[tuple[int, str, int]]) -> None:
        """Create the set from ``(layer, site, size)`` blocks."""
        self._keys: list[tuple[int, str]] = []
        sizes = []
        for layer, site, size in blocks:
            if site not in SITES:
                raise DataError(f'unknown site {site!r}; use one of {SITES}')
            if int(layer) < 0 or int(size) < 1:
                raise DataError(f'bad block ({layer}, {site!r}, {size}): layer must be >= 0 and '
                                'size >= 1')
            if (int(layer), site) in self._keys:
                raise DataError(f'block ({layer}, {site!r}) given twice')
            self._keys.append((int(layer), site))
            sizes.append(int(size))
        if not self._keys:
            raise DataError('a NeuronSet needs at least one (layer, site, size) block')
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # [blocks + 1]

    @property
    def total(self) -> int:
        """Return the number of scalars in all blocks."""
        return int(self._starts[-1])

    def locate(self, positions: 'torch.Tensor | Sequence[int]') -> list[Neuron]:
        """Map global positions back to (layer, site, index)."""
        pos = torch.as_tensor(positions).flatten().to(torch.int64).numpy()
        if pos.size and (pos.min() < 0 or pos.max() >= self.total):
            raise DataError(f'positions must lie in 0..{self.total - 1}')
        block = np.searchsorted(self._starts, pos, side='right') - 1
        return [Neuron(self._keys[b][0], self._keys[b][1], int(p - self._starts[b]))
                for b, p in zip(block.tolist(), pos.tolist())]
