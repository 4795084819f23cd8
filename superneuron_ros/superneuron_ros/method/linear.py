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
The linear readout: multinomial logistic regression over a few standardised scalars.

Fitted in float64 by L-BFGS on the mean cross-entropy plus ``l2 / 2 * |W|^2`` (the intercept is
not penalised). Inputs are standardised inside the readout (centre and scale stored with it), so
one L2 grid fits every layer. Probabilities get a softmax temperature and vote shares a monotone
share -> accuracy table, both fitted on out-of-fold answers; ``expected_calibration_error``
measures the result.
"""

from contextlib import contextmanager
import ctypes
import dataclasses
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from superneuron_ros.errors import DataError
import torch

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
NEWTON_MAX_COLUMNS = 64  # exact Newton steps up to this many columns, L-BFGS beyond
ECE_BINS = 10


def _openblas() -> 'ctypes.CDLL | None':
    """Return numpy's bundled OpenBLAS when it exposes its thread setting, else None."""
    folder = Path(np.__file__).resolve().parent
    for lib in sorted(folder.parent.glob('numpy.libs/libscipy_openblas*.so')):
        try:
            handle = ctypes.CDLL(str(lib))
            handle.scipy_openblas_get_num_threads64_.restype = ctypes.c_int
            handle.scipy_openblas_set_num_threads64_.argtypes = [ctypes.c_int]
            return handle
        except (OSError, AttributeError):
            continue
    return None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """
    Run numpy's matrix products on one thread inside the block.

    The readout fits multiply tiny matrices thousands of times; OpenBLAS's threads make that
    about ten times slower on a busy machine. Without a recognised OpenBLAS this does nothing.
    """
    lib = _openblas()
    if lib is None:
        yield
        return
    previous = lib.scipy_openblas_get_num_threads64_()
    lib.scipy_openblas_set_num_threads64_(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads64_(previous)


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """A fitted linear readout: logits = ((x - center) / scale) @ coef + intercept."""

    center: np.ndarray  # [m] float64
    scale: np.ndarray  # [m] float64, > 0
    coef: np.ndarray  # [m, C] float64
    intercept: np.ndarray  # [C] float64
    l2: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Return logits [n, C] of x [n, m]."""
        return ((np.asarray(x, dtype=np.float64) - self.center) / self.scale) @ self.coef \
            + self.intercept


def fit_linear(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
               max_iter: int = 100, start: LinearFit | None = None) -> LinearFit:
    """
    Fit a multinomial logistic regression on x [n, m] float, y [n] in 0..C-1.

    ``start`` (a fit on the same columns, e.g. at a larger L2) is the initial point.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise DataError(f'need [n >= 2, m] values and n labels, got {x.shape} and {y.shape}')
    if not np.isfinite(x).all():
        raise DataError('activations for the linear readout contain NaN or infinity')
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(center)), scale, 1.0)
    z = (x - center) / scale  # [n, m]
    if start is None:
        w0 = np.zeros((x.shape[1], num_classes))
        b0 = np.zeros(num_classes)
    else:  # the same model in this fit's standardisation
        w0 = start.coef * (scale / start.scale)[:, None]
        b0 = start.intercept + ((center - start.center) / start.scale) @ start.coef
    solve = _newton if x.shape[1] <= NEWTON_MAX_COLUMNS else _lbfgs
    w, b = solve(z, y, num_classes, float(l2), w0, b0, max_iter)
    return LinearFit(center, scale, w, b, float(l2))


def _loss(z: np.ndarray, onehot: np.ndarray, l2: float, w: np.ndarray,
          b: np.ndarray) -> tuple[float, np.ndarray]:
    logp = log_softmax(z @ w + b)
    return float(-(onehot * logp).sum() / len(z) + 0.5 * l2 * (w * w).sum()), logp


def _newton(z: np.ndarray, y: np.ndarray, num_classes: int, l2: float, w: np.ndarray,
            b: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Damped Newton steps on the penalised mean cross-entropy (small m: exact Hessian)."""
    n, m = z.shape
    c = num_classes
    zt = np.concatenate([z, np.ones((n, 1))], axis=1)  # [n, m + 1]
    onehot = np.eye(c)[y]  # [n, C]
    penalty = np.concatenate([np.full(m, l2), [1e-8]])  # the intercept is barely penalised
    loss, logp = _loss(z, onehot, l2, w, b)
    for _ in range(max_iter):
        p = np.exp(logp)  # [n, C]
        theta = np.concatenate([w, b[None, :]], axis=0)  # [m + 1, C]
        grad = zt.T @ (p - onehot) / n + penalty[:, None] * theta  # [m + 1, C]
        if np.abs(grad).max() < 1e-8:
            break
        zp = (p[:, :, None] * zt[:, None, :]).reshape(n, c * (m + 1))  # [n, C(m+1)]
        hess = -(zp.T @ zp) / n
        for k in range(c):
            block = slice(k * (m + 1), (k + 1) * (m + 1))
            hess[block, block] += (zt * p[:, k:k + 1]).T @ zt / n + np.diag(penalty)
        step = np.linalg.solve(hess + 1e-10 * np.eye(len(hess)),
                               grad.T.reshape(-1)).reshape(c, m + 1).T  # [m + 1, C]
        t = 1.0
        while True:
            new = theta - t * step
            new_loss, new_logp = _loss(z, onehot, l2, new[:-1], new[-1])
            if new_loss <= loss - 1e-4 * t * float((grad * step).sum()) or t < 1e-6:
                break
            t *= 0.5
        done = loss - new_loss < 1e-12 * max(1.0, abs(loss))
        w, b, loss, logp = new[:-1], new[-1], new_loss, new_logp
        if done:
            break
    return w.copy(), b.copy()


def _lbfgs(z: np.ndarray, y: np.ndarray, num_classes: int, l2: float, w0: np.ndarray,
           b0: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS on the same objective, for many columns (the ceiling readout)."""
    zt = torch.from_numpy(z)
    target = torch.from_numpy(y)
    w = torch.from_numpy(w0.copy()).requires_grad_(True)
    b = torch.from_numpy(b0.copy()).requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7,
                            tolerance_change=1e-10, history_size=20,
                            line_search_fn='strong_wolfe')

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(zt @ w + b, target) \
            + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().numpy().copy(), b.detach().numpy().copy()


def stratified_fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Return the fold [n] of each sample: each class shuffled and dealt round-robin."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(y.shape[0], dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        fold[rng.permutation(members)] = (np.arange(members.size) + offset) % folds
        offset += members.size
    return fold


def choose_linear(x: np.ndarray, y: np.ndarray, num_classes: int, sizes: Sequence[int],
                  l2_grid: Sequence[float] = L2_GRID, folds: int = 3,
                  seed: int = 0) -> tuple[int, float, dict[int, tuple[float, float]]]:
    """
    Choose m (a prefix of the ranked columns of x) and L2 by inner cross-validation.

    x [n, M] holds the candidate columns best first. Returns the chosen m, its L2 and, per m, the
    inner accuracy and L2 of its best L2 (accuracy first, then log-loss, then smaller m).
    """
    fold = stratified_fold_ids(y, folds, seed)
    best_per_m: dict[int, tuple[float, float]] = {}
    ranked = []
    grid = sorted(l2_grid, reverse=True)  # strong to weak, each fit starting from the last
    for m in sizes:
        correct, loss = np.zeros(len(grid)), np.zeros(len(grid))
        for f in range(folds):
            train, test = fold != f, fold == f
            fit = None
            for g, l2 in enumerate(grid):
                fit = fit_linear(x[train, :m], y[train], num_classes, l2, start=fit)
                logp = log_softmax(fit.logits(x[test, :m]))
                correct[g] += int((logp.argmax(axis=1) == y[test]).sum())
                loss[g] -= float(logp[np.arange(test.sum()), y[test]].sum())
        results = [(correct[g] / len(y), -loss[g] / len(y), -l2, l2)
                   for g, l2 in enumerate(grid)]
        acc, ll, _, l2 = max(results)
        best_per_m[m] = (acc, l2)
        ranked.append((acc, ll, -m, m, l2))
    _, _, _, m, l2 = max(ranked)
    return m, l2, best_per_m


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Return the row-wise log-softmax of z [n, C]."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Return the softmax temperature in [0.05, 20] minimising the log-loss of logits [n, C]."""
    rows = np.arange(len(y))

    def nll(t: float) -> float:
        return -float(log_softmax(logits / t)[rows, y].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))
    i = int(np.argmin([nll(t) for t in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    fine = np.exp(np.linspace(np.log(lo), np.log(hi), 41))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def isotonic_table(score: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Return a monotone table (points ascending, accuracy) fitted by pool-adjacent-violators.

    score [n] is the winning vote share of each out-of-fold answer, correct [n] whether it was
    right; each distinct share gets the isotonic accuracy of its pool.
    """
    points, inverse = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    hits = np.bincount(inverse, weights=np.asarray(correct, dtype=np.float64))
    counts = np.bincount(inverse).astype(np.float64)
    blocks = []  # [sum of hits, count, number of points]
    for h, c in zip(hits, counts):
        blocks.append([h, c, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            h2, c2, k2 = blocks.pop()
            blocks[-1][0] += h2
            blocks[-1][1] += c2
            blocks[-1][2] += k2
    accuracy = np.concatenate([np.full(k, h / c) for h, c, k in blocks])
    return points, accuracy


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = ECE_BINS) -> dict[str, object]:
    """
    Return the expected calibration error over ``bins`` equal-width confidence bins.

    Also returns each bin's count, mean confidence and accuracy (None when empty), for a
    reliability diagram.
    """
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    which = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    hit_sum = np.bincount(which, weights=correct, minlength=bins)
    safe = np.maximum(counts, 1)
    ece = float((np.abs(conf_sum - hit_sum)).sum() / max(1, confidence.size))
    return {'ece': ece, 'bins': bins, 'count': counts.tolist(),
            'confidence': [float(v) if n else None for v, n in zip(conf_sum / safe, counts)],
            'accuracy': [float(v) if n else None for v, n in zip(hit_sum / safe, counts)]}
