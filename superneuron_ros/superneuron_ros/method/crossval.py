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
Repeated stratified k-fold cross-validation of every readout at every layer.

For each repeat and fold, everything is chosen on the training part only: the ranking of every
scalar (an inner k-fold of 1-D classifiers, :func:`superneuron_ros.method.ranking.heldout_scores`),
the vote's top-k scalars and their fits, the linear readout's m and L2 (inner cross-validation)
and the ceiling's fit (L2 fixed at CEILING_L2). The test part is only predicted. The result
holds, per layer and readout, the out-of-fold answers of every repeat (vote shares, logits) and
the per-fold accuracies.

``fit_layer_readouts`` is the same recipe on a whole labelled set: the final readouts.
"""

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
from superneuron_ros.method.linear import (choose_linear, fit_linear, LinearFit,
                                           stratified_fold_ids)
from superneuron_ros.method.probing import fit_means, fit_stumps
from superneuron_ros.method.profiles import vote_readout
from superneuron_ros.method.ranking import heldout_scores, top_k
from superneuron_ros.method.readouts import Readout
from superneuron_ros.vlm.capture import SITES
import torch

Store = Mapping[tuple[int, str], torch.Tensor]  # (layer, site) -> [N, D] float32
Candidate = tuple[float, int, int, int, int]  # (-score, layer, site code, rank, index)
CEILING_L2 = 0.1  # the ceiling's L2, fixed: an inner search over hundreds of columns is slow


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What the search compares: sites, vote size, linear sizes and the folds."""

    sites: tuple[str, ...]
    k: int  # scalars in the vote
    sizes: tuple[int, ...]  # m compared for the linear readout
    folds: int  # outer folds
    repeats: int
    rank_folds: int  # inner folds of the 1-D ranking
    metric: str  # 'accuracy' or 'balanced' (ranking and fold scores)
    seed: int
    ceiling: bool = True  # the linear readout over every scalar of the layer


@dataclasses.dataclass
class OutOfFold:
    """Out-of-fold answers [repeats, N, C] per layer and readout, with per-fold scores."""

    shares: dict[int, np.ndarray]  # vote shares
    winners: dict[int, np.ndarray]  # [R, N] vote winners (tie-break applied)
    logits: dict[tuple[int, str], np.ndarray]  # (layer, 'm8' | 'auto' | 'ceiling') -> logits
    fold_scores: dict[tuple[int, str], list[float]]  # (layer, readout) -> one score per fold
    chosen_m: dict[int, list[int]]  # m the inner CV chose in each fold
    fold_ids: np.ndarray  # [R, N] the test fold of each sample in each repeat


def rank_blocks(store: Store, rows: np.ndarray, y: np.ndarray, num_classes: int,
                settings: SearchSettings, keep: int) -> dict[tuple[int, str], tuple]:
    """Return, per (layer, site), the best `keep` indices and their held-out 1-D scores."""
    out = {}
    yt = torch.from_numpy(y[rows])
    for (layer, site), x in store.items():
        scores = heldout_scores(x[rows], yt, num_classes, folds=settings.rank_folds,
                                seed=settings.seed, metric=settings.metric)
        best = top_k(scores, keep)
        out[(layer, site)] = (best.numpy(), scores[best].numpy())
    return out


def candidates(ranked: Mapping[tuple[int, str], tuple], layer: int, count: int,
               sites: Sequence[str], only_layer: bool = False) -> list[Candidate]:
    """Return the `count` best scalars of layers 0..layer; ties: shallower, residual, rank."""
    pool = []
    for (la, site), (index, score) in ranked.items():
        if site in sites and (la == layer if only_layer else la <= layer):
            pool.extend((-float(s), la, SITES.index(site), r, int(i))
                        for r, (i, s) in enumerate(zip(index, score)))
    return sorted(pool)[:count]


def columns(store: Store, chosen: Sequence[Candidate], rows: np.ndarray) -> np.ndarray:
    """Return the values [len(rows), m] of the chosen scalars, in their order."""
    return np.stack([store[(c[1], SITES[c[2]])][rows, c[4]].numpy().astype(np.float64)
                     for c in chosen], axis=1)


def fit_vote(store: Store, chosen: Sequence[Candidate], rows: np.ndarray, y: np.ndarray,
             layer: int, num_classes: int, metric: str) -> Readout:
    """Fit the 1-D classifiers of the chosen scalars on `rows` and return the vote readout."""
    x = torch.from_numpy(columns(store, chosen, rows)).float()
    yt = torch.from_numpy(y[rows])
    means = fit_means(x, yt, num_classes).T.numpy()  # [k, C]
    kind = 'stump' if num_classes == 2 else 'means'
    fit = fit_stumps(x, yt, metric=metric) if kind == 'stump' else None
    return vote_readout(layer, kind, num_classes, [c[1] for c in chosen],
                        [c[2] for c in chosen], [c[4] for c in chosen],
                        None if fit is None else fit.threshold.numpy(),
                        None if fit is None else fit.polarity.numpy(), means)


def linear_readout(layer: int, chosen: Sequence[Candidate], fit: LinearFit, num_labels: int,
                   temperature: float = 1.0) -> Readout:
    """Return the linear readout of a fit over the chosen scalars."""
    return Readout(layer=layer, kind='linear', neuron_layer=[c[1] for c in chosen],
                   site=[c[2] for c in chosen], index=[c[4] for c in chosen],
                   params={'center': fit.center, 'scale': fit.scale, 'coef': fit.coef,
                           'intercept': fit.intercept},
                   num_labels=num_labels, temperature=temperature)


def fold_score(pred: np.ndarray, truth: np.ndarray, metric: str) -> float:
    """Return the accuracy (or balanced accuracy) of pred against truth."""
    if metric == 'accuracy':
        return float((pred == truth).mean())
    return float(np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)]))


def cross_validate(store: Store, y: np.ndarray, num_classes: int, settings: SearchSettings,
                   progress: Callable[[str], None] = lambda _: None,
                   on_layer: Callable[[], None] = lambda: None) -> OutOfFold:
    """
    Run the repeated stratified k-fold search over every layer of `store` (module doc).

    `progress` is called before each fold, `on_layer` after each layer of each fold (it may
    raise to stop the search).
    """
    layers = sorted({layer for layer, _ in store})
    n, max_m = len(y), max(settings.sizes)
    keep = max(settings.k, max_m)
    shape = (settings.repeats, n, num_classes)
    oof = OutOfFold({la: np.zeros(shape) for la in layers},
                    {la: np.zeros(shape[:2], dtype=np.int64) for la in layers}, {}, {},
                    {la: [] for la in layers}, np.zeros((settings.repeats, n), dtype=np.int64))
    names = [f'm{m}' for m in settings.sizes] + ['auto'] + ['ceiling'] * settings.ceiling
    for key in [(la, name) for la in layers for name in names]:
        oof.logits[key] = np.zeros(shape)
    for r in range(settings.repeats):
        fold = stratified_fold_ids(y, settings.folds, settings.seed + 1009 * r)
        oof.fold_ids[r] = fold
        for f in range(settings.folds):
            progress(f'repeat {r + 1}/{settings.repeats}, fold {f + 1}/{settings.folds}')
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            ranked = rank_blocks(store, train, y, num_classes, settings, keep)
            for layer in layers:
                _fold_layer(store, y, num_classes, settings, oof, ranked, layer, r, train, test)
                on_layer()
    return oof


def _fold_layer(store: Store, y: np.ndarray, num_classes: int, settings: SearchSettings,
                oof: OutOfFold, ranked: Mapping, layer: int, r: int, train: np.ndarray,
                test: np.ndarray) -> None:
    """Fit every readout of one layer on `train` and record its answers on `test`."""
    def record(name: str, pred: np.ndarray) -> None:
        oof.fold_scores.setdefault((layer, name), []).append(
            fold_score(pred, y[test], settings.metric))

    voters = candidates(ranked, layer, settings.k, settings.sites)
    vote = fit_vote(store, voters, train, y, layer, num_classes, settings.metric)
    winners, shares = vote.answer(columns(store, voters, test))
    oof.shares[layer][r, test] = shares
    oof.winners[layer][r, test] = winners
    record('vote', winners)
    pool = candidates(ranked, layer, max(settings.sizes), settings.sites)
    x_train, x_test = columns(store, pool, train), columns(store, pool, test)
    sizes = tuple(m for m in settings.sizes if m <= len(pool)) or (len(pool),)
    m_auto, _, per_m = choose_linear(x_train, y[train], num_classes, sizes,
                                     seed=settings.seed + r)
    oof.chosen_m[layer].append(m_auto)
    done = False
    for m in settings.sizes:
        size = min(m, len(pool))
        l2 = per_m.get(size, (0.0, 1e-2))[1]
        logits = fit_linear(x_train[:, :size], y[train], num_classes, l2).logits(
            x_test[:, :size])
        oof.logits[(layer, f'm{m}')][r, test] = logits
        record(f'm{m}', logits.argmax(axis=1))
        if size == m_auto and not done:
            done = True
            oof.logits[(layer, 'auto')][r, test] = logits
            record('linear', logits.argmax(axis=1))
    if settings.ceiling:
        everything = [(0.0, layer, SITES.index(site), 0, i) for site in settings.sites
                      for i in range(store[(layer, site)].shape[1])]
        xa, xb = columns(store, everything, train), columns(store, everything, test)
        logits = fit_linear(xa, y[train], num_classes, CEILING_L2).logits(xb)
        oof.logits[(layer, 'ceiling')][r, test] = logits
        record('ceiling', logits.argmax(axis=1))


def fit_layer_readouts(store: Store, y: np.ndarray, num_classes: int, settings: SearchSettings,
                       layers: Sequence[int]) -> dict[int, dict[str, object]]:
    """
    Fit, on every example, the vote and the linear readout of each of `layers`.

    The ranking, the linear readout's m and its L2 are chosen by cross-validation on the whole
    set, as inside each training fold. Returns per layer {'vote': Readout, 'linear': Readout,
    'm': int, 'l2': float}; temperatures and vote calibration are the caller's.
    """
    rows = np.arange(len(y))
    keep = max(settings.k, max(settings.sizes))
    ranked = rank_blocks(store, rows, y, num_classes, settings, keep)
    out = {}
    for layer in layers:
        voters = candidates(ranked, layer, settings.k, settings.sites)
        pool = candidates(ranked, layer, max(settings.sizes), settings.sites)
        x = columns(store, pool, rows)
        sizes = tuple(m for m in settings.sizes if m <= len(pool)) or (len(pool),)
        m, l2, _ = choose_linear(x, y, num_classes, sizes, seed=settings.seed)
        fit = fit_linear(x[:, :m], y, num_classes, l2)
        out[layer] = {'vote': fit_vote(store, voters, rows, y, layer, num_classes,
                                       settings.metric),
                      'linear': linear_readout(layer, pool[:m], fit, num_classes),
                      'm': m, 'l2': l2,
                      'neurons': [{'layer': c[1], 'site': SITES[c[2]], 'index': c[4],
                                   'cv_score': -c[0]} for c in pool[:m]]}
    return out
