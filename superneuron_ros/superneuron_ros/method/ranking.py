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
Held-out scores of every scalar as its own classifier: stratified folds, ranking, top k.

With tens of thousands of candidate scalars, the winners on the data they were fitted on are
mostly lucky; scalars are therefore ranked by their mean score on folds they were not fitted on.
"""

import logging
from typing import Sequence

from superneuron_ros.errors import DataError
from superneuron_ros.method.probing import (_as_tensor, _check_metric, _check_x, _check_y,
                                            _chunk_t, _class_factors, _column_chunks,
                                            _fit_means_t, _fit_sorted, _predict_means_t,
                                            _predict_stumps_t, _score, _sort_rows,
                                            _stump_credits, _tidy, _unit_weights,
                                            DEFAULT_CHUNK_ELEMENTS)
import torch

_LOG = logging.getLogger(__name__)

Split = tuple[torch.Tensor, torch.Tensor]  # (train indices, test indices), both long, sorted


def stratified_folds(y: torch.Tensor, folds: int, seed: int = 0) -> list[Split]:
    """
    Split sample indices into ``folds`` (train, test) pairs with class proportions kept.

    Each class is shuffled with a seeded generator and dealt round-robin over the folds (continuing
    from where the previous class stopped, so fold sizes differ by at most one). Every sample is in
    exactly one test fold and never in that fold's training part.
    """
    y = _as_tensor(y).long()
    n = y.shape[0]
    if folds < 2 or folds > n:
        raise DataError(f'folds must be between 2 and the number of samples ({n}), got {folds}')
    generator = torch.Generator().manual_seed(int(seed))
    fold_of = torch.empty(n, dtype=torch.long)
    offset = 0
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().flatten()
        shuffled = members[torch.randperm(members.numel(), generator=generator)]
        fold_of[shuffled] = (torch.arange(members.numel()) + offset) % folds
        offset += members.numel()
    return [((fold_of != f).nonzero().flatten(), (fold_of == f).nonzero().flatten())
            for f in range(folds)]


def _check_splits(splits: Sequence[Split], n: int) -> list[Split]:
    checked = []
    for train, test in splits:
        train, test = _as_tensor(train).long(), _as_tensor(test).long()
        if train.numel() == 0 or test.numel() == 0:
            raise DataError('every fold needs training and test samples; use fewer folds')
        if int(torch.cat([train, test]).min()) < 0 or int(torch.cat([train, test]).max()) >= n:
            raise DataError(f'fold indices must lie in 0..{n - 1}')
        if bool(torch.isin(test, train).any()):
            raise DataError('a fold tests on samples it trains on; test indices must not appear '
                            "in the same fold's training indices")
        checked.append((train, test))
    if not checked:
        raise DataError('no folds given')
    return checked


def heldout_scores(x: torch.Tensor, y: torch.Tensor, num_classes: int, folds: int = 5,
                   seed: int = 0, metric: str = 'accuracy',
                   sample_weight: torch.Tensor | None = None,
                   splits: Sequence[Split] | None = None,
                   chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """
    Return each scalar's mean held-out score over the folds: [D] float64.

    For every fold each column is fitted on the training part only (a stump when ``num_classes``
    is 2, nearest class means otherwise) and scored on the test part (``metric`` 'accuracy' or
    'balanced', optionally sample-weighted). ``splits`` overrides the stratified folds. Stumps
    sort each column once; a fold's training order is that order with the test samples masked out.
    """
    _check_metric(metric)
    if num_classes < 2:
        raise DataError(f'a task needs at least two labels, got {num_classes}')
    x = _check_x(x)
    n, num_columns = x.shape
    y = _check_y(y, n, num_classes)
    w = _unit_weights(sample_weight, n)
    counts = torch.bincount(y, minlength=num_classes)
    if splits is None:
        if int(counts.min()) < 2:
            raise DataError(f'every label needs at least 2 examples for held-out scoring; got '
                            f'{counts.tolist()} per label; add examples')
        if int(counts.min()) < folds:
            _LOG.warning('a label has fewer examples (%d) than folds (%d): some test folds lack '
                         'it', int(counts.min()), folds)
        splits = stratified_folds(y, folds, seed)
    splits = _check_splits(splits, n)
    test_factors = [_class_factors(y[te], w[te], num_classes, metric) for _, te in splits]
    if num_classes == 2:
        given = None if sample_weight is None else w
        credits = [_stump_credits(y, given, torch.isin(torch.arange(n), tr), metric)
                   for tr, _ in splits]
    scores = torch.zeros(num_columns, dtype=torch.float64)
    for cols in _column_chunks(num_columns, n, chunk_elements):
        xt = _chunk_t(x, cols)  # [d, N]
        d = xt.shape[0]
        total = torch.zeros(d, dtype=torch.float64)
        if num_classes == 2:
            vals, order = _sort_rows(xt)  # [d, N]
            valid = (vals[:, 1:] > vals[:, :-1]).to(torch.float32)  # [d, N-1] distinct
        for f, (train, test) in enumerate(splits):
            if num_classes == 2:
                thr, pol, _ = _fit_sorted(vals, order, valid, *credits[f])
                pred = _predict_stumps_t(xt[:, test], thr, pol)  # [d, n_test]
            else:
                means = _fit_means_t(xt[:, train], y[train], w[train], num_classes)  # [d, C]
                pred = _predict_means_t(xt[:, test], means)  # [d, n_test]
            total += _score(pred, y[test], w[test], test_factors[f], num_classes)
        scores[cols] = _tidy(total / len(splits))
    return scores


# ----------------------------------------------------------------------------- ranking


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Return the indices [min(k, D)] of the k best scores, best first; ties go to lower index."""
    scores = _as_tensor(scores).to(torch.float64)
    if scores.dim() != 1:
        raise DataError(f'scores must be a vector, got shape {tuple(scores.shape)}')
    if k < 1:
        raise DataError(f'k must be at least 1, got {k}')
    scores = torch.nan_to_num(scores, nan=-float('inf'))
    return torch.sort(scores, descending=True, stable=True).indices[:k]
