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

"""Tests of the per-scalar probing math: stumps, class means, folds, ranking and voting."""

import numpy as np
import pytest
from superneuron_ros.errors import DataError
from superneuron_ros.method import probing, ranking
from superneuron_ros.method.readouts import argmax_with_tiebreak, CONSTANT_THRESHOLD
import torch


def _planted(n=40, d=50, column=17, seed=0, reverse=False):
    """Noise [n, d] with one column that separates the classes: class 0 in [0, 1], 1 in [3, 4]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=g) * 2
    signal = torch.rand(n, generator=g) + 3.0 * y
    x[:, column] = -signal if reverse else signal
    return x, y


def _score(pred, y, w, metric):
    """Weighted accuracy, or mean per-class recall over the classes present, of pred [n]."""
    correct = (pred.long() == y).double() * w
    if metric == 'accuracy':
        return float(correct.sum() / w.sum())
    present = [c for c in (0, 1) if bool((y == c).any())]
    return sum(float(correct[y == c].sum() / w[y == c].sum()) for c in present) / len(present)


def _brute_force(values, y, w, metric):
    """Best score of any threshold between distinct values (or constant), both polarities."""
    distinct = sorted(set(values.tolist()))
    cuts = [-float('inf')] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])]
    return max(_score((values > cut) if above else (values <= cut), y, w, metric)
               for cut in cuts for above in (True, False))


@pytest.mark.parametrize('reverse', [False, True])
def test_stumps_find_the_planted_neuron_and_a_threshold_between_the_classes(reverse):
    """Fit and ranking find the separating column; its threshold lies between the classes."""
    x, y = _planted(reverse=reverse)
    fit = probing.fit_stumps(x, y)
    best = int(ranking.top_k(fit.train_accuracy, 1)[0])
    assert best == 17
    assert float(fit.train_accuracy[17]) == 1.0
    column = x[:, 17]
    low, high = sorted([column[y == 0], column[y == 1]], key=lambda c: float(c.mean()))
    assert float(low.max()) < float(fit.threshold[17]) < float(high.min())
    assert int(fit.polarity[17]) == (-1 if reverse else 1)
    assert torch.equal(probing.predict_stumps(x, fit)[:, 17], y)
    scores = ranking.heldout_scores(x, y, num_classes=2, folds=4, seed=1)
    assert int(ranking.top_k(scores, 1)[0]) == 17
    assert float(scores[17]) == 1.0
    assert float(scores.median()) < 0.8


def test_stumps_handle_tied_values_and_never_split_inside_them():
    """A split never separates equal values."""
    x = torch.tensor([[1.0], [1.0], [1.0], [2.0], [2.0], [3.0]])
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    fit = probing.fit_stumps(x, y)
    assert float(fit.threshold[0]) == 1.5
    assert int(fit.polarity[0]) == 1
    assert abs(float(fit.train_accuracy[0]) - 5 / 6) < 1e-12


@pytest.mark.parametrize('metric', ['accuracy', 'balanced'])
@pytest.mark.parametrize('weighted', [False, True])
def test_stumps_match_an_exhaustive_search(metric, weighted):
    """The closed-form fit equals trying every threshold and polarity."""
    g = torch.Generator().manual_seed(7)
    for _ in range(60):
        n = int(torch.randint(1, 12, (1,), generator=g))
        x = torch.randint(0, 4, (n, 3), generator=g).float()  # many ties
        y = torch.randint(0, 2, (n,), generator=g)
        w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1 if weighted else None
        fit = probing.fit_stumps(x, y, sample_weight=w, metric=metric)
        ones = torch.ones(n, dtype=torch.float64)
        for c in range(3):
            expected = _brute_force(x[:, c], y, ones if w is None else w, metric)
            assert abs(float(fit.train_accuracy[c]) - expected) < 1e-9
            # The stump reported achieves the reported score.
            single = probing.StumpFit(fit.threshold[c:c + 1], fit.polarity[c:c + 1],
                                      fit.train_accuracy[c:c + 1])
            pred = probing.predict_stumps(x[:, c:c + 1], single)[:, 0]
            achieved = _score(pred, y, ones if w is None else w, metric)
            assert abs(achieved - expected) < 1e-9


def test_balanced_metric_prefers_the_minority_split_where_accuracy_keeps_the_constant():
    """Balanced accuracy weighs the rare class; plain accuracy keeps the constant stump on ties."""
    values = [0.0, 1, 2, 3, 4, 5, 6, 7, 10, 8]
    x = torch.tensor(values)[:, None]
    y = torch.tensor([0] * 9 + [1])
    plain = probing.fit_stumps(x, y, metric='accuracy')
    assert float(plain.threshold[0]) == CONSTANT_THRESHOLD  # ties go to the constant stump
    assert int(plain.polarity[0]) == -1  # i.e. always class 0
    assert abs(float(plain.train_accuracy[0]) - 0.9) < 1e-12
    balanced = probing.fit_stumps(x, y, metric='balanced')
    assert float(balanced.threshold[0]) == 7.5
    assert abs(float(balanced.train_accuracy[0]) - (8 / 9 + 1) / 2) < 1e-12


def test_float16_input_and_chunking_do_not_change_results():
    """Float16 input and small chunks give bit-identical fits and scores."""
    x, y = _planted(n=30, d=37, column=5)
    half = x.half()
    reference = probing.fit_stumps(half.float(), y)
    chunked = probing.fit_stumps(half, y, chunk_elements=64)
    assert torch.equal(reference.threshold, chunked.threshold)
    assert torch.equal(reference.polarity, chunked.polarity)
    assert torch.equal(reference.train_accuracy, chunked.train_accuracy)
    assert torch.equal(ranking.heldout_scores(half, y, 2, folds=3, chunk_elements=64),
                       ranking.heldout_scores(half.float(), y, 2, folds=3))


def test_class_means_find_the_planted_neuron_for_three_classes():
    """Nearest 1-D class means find the column that orders three classes."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(45) % 3
    x = torch.randn(45, 20, generator=g)
    x[:, 5] = 10.0 * y + 0.5 * torch.randn(45, generator=g)
    means = probing.fit_means(x, y, 3)
    assert means.shape == (3, 20)
    assert torch.allclose(means[:, 5], torch.tensor([0.0, 10.0, 20.0]), atol=1.0)
    assert torch.equal(probing.predict_means(x, means)[:, 5], y)
    scores = ranking.heldout_scores(x, y, num_classes=3, folds=5, seed=0)
    assert int(ranking.top_k(scores, 1)[0]) == 5 and float(scores[5]) == 1.0
    assert float(scores[torch.arange(20) != 5].max()) < 0.8


def test_two_class_means_are_a_threshold_at_the_midpoint():
    """With two classes the nearest mean is a midpoint threshold; a tie goes to class 0."""
    x = torch.tensor([[0.0], [2.0], [8.0], [10.0]])
    y = torch.tensor([0, 0, 1, 1])
    means = probing.fit_means(x, y, 2)
    assert means[:, 0].tolist() == [1.0, 9.0]
    probe = torch.tensor([[4.9], [5.0], [5.1], [-3.0]])
    assert probing.predict_means(probe, means)[:, 0].tolist() == [0, 0, 1, 0]  # 5.0: tie, low


def test_stratified_folds_partition_the_samples_and_keep_class_proportions():
    """Every sample is tested once, never trained on in its fold, classes spread evenly."""
    y = torch.tensor([0] * 13 + [1] * 7 + [2] * 5)
    splits = ranking.stratified_folds(y, folds=5, seed=4)
    assert len(splits) == 5
    tested = torch.cat([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(25))  # each sample tested exactly once
    for train, test in splits:
        assert not set(train.tolist()) & set(test.tolist())
        assert sorted(train.tolist() + test.tolist()) == list(range(25))
        for c, count in enumerate([13, 7, 5]):
            assert abs(int((y[test] == c).sum()) - count / 5) < 1
    again = ranking.stratified_folds(y, folds=5, seed=4)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(splits, again))
    other = ranking.stratified_folds(y, folds=5, seed=5)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(splits, other))
    with pytest.raises(DataError):
        ranking.stratified_folds(y, folds=1)


def test_heldout_scores_never_use_test_samples_for_fitting():
    """A fold's thresholds come from its training samples only."""
    # Train part: class 0 at 0 and 1, class 1 at 10 and 11: the threshold must be 5.5. The test
    # samples lie between (class 1 at 2, class 0 at 9); a threshold placed using them (for
    # instance between 1 and 2) would score them right. Fitted on the training part only, both
    # are wrong: the held-out score must be exactly 0 although the training accuracy is 1.
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0], [2.0], [9.0]])
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    split = (torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5]))
    assert float(probing.fit_stumps(x[:4], y[:4]).train_accuracy[0]) == 1.0
    assert float(ranking.heldout_scores(x, y, 2, splits=[split])[0]) == 0.0
    # Reversing the roles: trained on 2 and 9 only, the stump puts 0..1 and 10..11 right.
    swapped = (torch.tensor([4, 5]), torch.tensor([0, 1, 2, 3]))
    assert float(ranking.heldout_scores(x, y, 2, splits=[swapped])[0]) == 0.0
    with pytest.raises(DataError):
        ranking.heldout_scores(x, y, 2, splits=[(torch.tensor([0, 1, 4]), torch.tensor([4, 5]))])


@pytest.mark.parametrize('metric', ['accuracy', 'balanced'])
def test_heldout_scores_equal_fitting_and_scoring_each_fold_separately(metric):
    """The vectorised held-out scores equal a plain per-fold fit and score."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(50, 30, generator=g)
    x[:, 3] += 1.5 * (torch.arange(50) % 2)
    y = torch.arange(50) % 2
    scores = ranking.heldout_scores(x, y, 2, folds=4, seed=2, metric=metric, chunk_elements=300)
    expected = torch.zeros(30, dtype=torch.float64)
    for train, test in ranking.stratified_folds(y, 4, seed=2):
        pred = probing.predict_stumps(x[test], probing.fit_stumps(x[train], y[train],
                                                                  metric=metric))
        correct = (pred == y[test][:, None]).double()  # [n_test, D]
        if metric == 'accuracy':
            expected += correct.mean(dim=0)
        else:
            expected += sum(correct[y[test] == c].mean(dim=0) for c in (0, 1)) / 2
    assert torch.allclose(scores, expected / 4, atol=1e-9)


def test_top_k_breaks_ties_by_index_and_puts_nan_last():
    """Equal scores keep index order; NaN ranks last."""
    scores = torch.tensor([0.5, 0.9, float('nan'), 0.9, 0.7, 0.9])
    assert ranking.top_k(scores, 4).tolist() == [1, 3, 5, 4]
    assert ranking.top_k(scores, 10).tolist() == [1, 3, 5, 4, 0, 2]
    with pytest.raises(DataError):
        ranking.top_k(scores, 0)


def test_tie_break_only_decides_between_tied_classes():
    """Ties go to the best tie-break, then the lowest class; untied classes never win by it."""
    shares = np.array([[0.25, 0.75, 0.0], [0.5, 0.0, 0.5], [0.25, 0.25, 0.5]])
    assert argmax_with_tiebreak(shares, np.zeros((3, 3))).tolist() == [1, 0, 2]
    tiebreak = np.array([[9.0, 0.0, 9.0], [0.1, 9.0, 0.3], [5.0, 0.0, 0.0]])
    # Row 1 is a tie between classes 0 and 2: class 2 has the higher tie-break; class 1 is not
    # tied, so its large tie-break value must not matter (nor must they in rows 0 and 2).
    assert argmax_with_tiebreak(shares, tiebreak).tolist() == [1, 2, 2]


def test_neuron_set_maps_global_positions_to_layer_site_index():
    """Global positions map back to (layer, site, index) across blocks."""
    neurons = probing.NeuronSet([(0, 'residual', 4), (0, 'mlp', 6), (1, 'residual', 4),
                                 (1, 'mlp', 6)])
    assert neurons.total == 20
    assert neurons.locate([0, 4, 9, 10, 19]) == [
        (0, 'residual', 0), (0, 'mlp', 0), (0, 'mlp', 5), (1, 'residual', 0), (1, 'mlp', 5)]
    with pytest.raises(DataError):
        probing.NeuronSet([(0, 'attention', 3)])
    with pytest.raises(DataError):
        neurons.locate([20])


def test_bad_inputs_raise_data_errors():
    """NaN, bad labels, shapes, metrics and missing classes raise DataError."""
    x, y = _planted(n=10, d=3, column=0)
    x[2, 1] = float('nan')
    with pytest.raises(DataError, match='column 1'):
        probing.fit_stumps(x, y)
    with pytest.raises(DataError):
        probing.fit_stumps(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(DataError):
        probing.fit_stumps(torch.zeros(4, 2), torch.tensor([0, 1]))
    with pytest.raises(DataError):
        probing.fit_stumps(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), metric='f1')
    with pytest.raises(DataError):
        probing.fit_means(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), num_classes=3)
    with pytest.raises(DataError, match='at least 2 examples'):
        ranking.heldout_scores(torch.zeros(5, 2), torch.tensor([0, 0, 0, 0, 1]), 2, folds=2)
