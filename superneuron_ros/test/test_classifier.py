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

"""Tests of the Super Neuron classifier: votes, shares, confidence, ties and the read plan."""

import numpy as np
import pytest
from superneuron_ros.errors import DataError
from superneuron_ros.method import probing, ranking
from superneuron_ros.method.classifier import Prediction, SuperNeuronClassifier
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.fingerprint import ModelFingerprint
import torch

FINGERPRINT = ModelFingerprint('LlavaForConditionalGeneration', 'llava', 4, 64, 128, 'nf4',
                               '0123abcd', 1)
YES_NO = TaskSpec('red_present', 'Is there a red shape?', ('yes', 'no'))
COLOURS = TaskSpec('colour', 'Which colour?', ('red', 'green', 'blue'))


def _stumps(threshold, polarity, weight=None, means=None, layer=None, site=None, index=None):
    """Return a stump profile over k neurons (layer 0, residual, indices 0..k-1 by default)."""
    k = len(threshold)
    return Profile.from_vote(
        task=YES_NO, prompt='p', exit_layer=1, kind='stump',
        layer=layer or [0] * k, site=site or [0] * k, index=index or list(range(k)),
        threshold=threshold, polarity=polarity, weight=weight or [1.0] * k,
        means=means or [[np.nan, np.nan]] * k, fingerprint=FINGERPRINT)


def _means(means, weight=None):
    """Return a 3-label class-means profile over k neurons."""
    k = len(means)
    return Profile.from_vote(
        task=COLOURS, prompt='p', exit_layer=1, kind='means', layer=[0] * k, site=[1] * k,
        index=list(range(k)), threshold=[np.nan] * k, polarity=[0] * k,
        weight=weight or [1.0] * k, means=means, fingerprint=FINGERPRINT)


def test_stump_votes_give_shares_label_and_confidence():
    """Each stump votes; the shares are the weighted vote and the winner's share is confidence."""
    classifier = SuperNeuronClassifier(_stumps([0.0, 1.0, 2.0], [1, 1, -1]))
    values = np.array([[0.5, 0.5, 0.5],   # votes 1, 0, 1 -> 'no' 2/3
                       [-1.0, 3.0, 3.0],  # votes 0, 1, 0 -> 'yes' 2/3
                       [5.0, 5.0, 1.0]])  # votes 1, 1, 1 -> 'no' 1
    np.testing.assert_array_equal(classifier.votes(values), [[1, 0, 1], [0, 1, 0], [1, 1, 1]])
    predictions = classifier.predict(values)
    assert [p.label for p in predictions] == ['no', 'yes', 'no']
    assert [p.label_index for p in predictions] == [1, 0, 1]
    assert predictions[0].scores == pytest.approx((1 / 3, 2 / 3))
    assert predictions[0].confidence == pytest.approx(2 / 3)
    assert predictions[2].scores == (0.0, 1.0) and predictions[2].confidence == 1.0
    assert all(p.labels == ('yes', 'no') and p.exit_layer == 1 for p in predictions)
    assert all(sum(p.scores) == pytest.approx(1.0) for p in predictions)
    assert isinstance(predictions[0], Prediction)


def test_classifier_agrees_with_the_probing_functions():
    """Votes equal predict_stumps / predict_means; shares are the weighted vote fractions."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(20, 4))
    profile = _stumps([0.1, -0.2, 0.0, 0.3], [1, -1, -1, 1], weight=[1.0, 2.0, 0.5, 1.5])
    fit = probing.StumpFit(torch.tensor(profile.threshold), torch.tensor(profile.polarity),
                           torch.zeros(4))
    expected = probing.predict_stumps(torch.from_numpy(values).float(), fit)
    classifier = SuperNeuronClassifier(profile)
    np.testing.assert_array_equal(classifier.votes(values), expected.numpy())
    weight = profile.weight.astype(np.float64)
    shares = np.stack([((expected.numpy() == c) * weight).sum(axis=1) / weight.sum()
                       for c in (0, 1)], axis=1)
    got = np.array([p.scores for p in classifier.predict(values)])
    np.testing.assert_allclose(got, shares, atol=1e-12)
    means = _means([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    expected = probing.predict_means(torch.from_numpy(values[:, :2]).float(),
                                     torch.from_numpy(means.means.T.copy()))
    np.testing.assert_array_equal(SuperNeuronClassifier(means).votes(values[:, :2]),
                                  expected.numpy())


def test_weights_decide_the_vote():
    """A heavier neuron outvotes two lighter ones."""
    classifier = SuperNeuronClassifier(_stumps([0.0, 0.0, 0.0], [1, -1, -1],
                                               weight=[3.0, 1.0, 1.0]))
    prediction = classifier.predict(np.array([[1.0, 1.0, 1.0]]))[0]  # votes 1, 0, 0
    assert prediction.label == 'no' and prediction.scores == pytest.approx((0.4, 0.6))


def test_ties_are_broken_by_the_summed_margin_then_by_label_order():
    """An even split goes to the side whose neurons lie farther past their thresholds."""
    classifier = SuperNeuronClassifier(_stumps([0.0, 0.0], [1, 1]))
    far_yes, far_no, even = classifier.predict(np.array([[-5.0, 1.0], [-1.0, 5.0],
                                                         [-2.0, 2.0]]))
    assert far_yes.scores == (0.5, 0.5) and far_yes.label == 'yes'
    assert far_no.scores == (0.5, 0.5) and far_no.label == 'no'
    assert even.label == 'yes'  # no margin either way: the first label
    # Margins are in units of each neuron's class-mean spread: 1.0 past a neuron whose classes
    # lie 10 apart counts less than 0.5 past one whose classes lie 0.1 apart.
    scaled = SuperNeuronClassifier(_stumps([0.0, 0.0], [1, 1],
                                           means=[[-5.0, 5.0], [-0.05, 0.05]]))
    assert scaled.predict(np.array([[-1.0, 0.5]]))[0].label == 'no'
    assert scaled.predict(np.array([[1.0, -0.5]]))[0].label == 'yes'


def test_means_profiles_vote_for_the_nearest_class_mean():
    """Each neuron votes for the label whose mean is nearest; ties between shares use distance."""
    classifier = SuperNeuronClassifier(_means([[0.0, 10.0, 20.0], [0.0, 1.0, 2.0],
                                               [5.0, 0.0, 10.0]]))
    prediction = classifier.predict(np.array([[9.0, 1.2, 9.0]]))[0]  # green, green, blue
    assert prediction.label == 'green'
    assert prediction.scores == pytest.approx((0.0, 2 / 3, 1 / 3))
    two = SuperNeuronClassifier(_means([[0.0, 10.0, 20.0], [0.0, 10.0, 20.0]]))
    # One vote red (distance 1 in 20 units), one green (distance 1): a tie; red is nearer overall
    # for the first value and green for the second, so the summed distances decide.
    assert two.predict(np.array([[1.0, 9.0]]))[0].scores == pytest.approx((0.5, 0.5, 0.0))
    assert two.predict(np.array([[1.0, 6.0]]))[0].label == 'red'
    assert two.predict(np.array([[4.0, 9.0]]))[0].label == 'green'


def test_requirements_group_indices_by_site_and_map_back_to_profile_order():
    """The read plan lists sorted indices per (layer, site); site arrays give the same answer."""
    profile = _stumps([0.0, 0.0, 0.0, 0.0], [1, -1, 1, 1], layer=[1, 0, 1, 1],
                      site=[1, 0, 1, 0], index=[90, 7, 3, 7], weight=[1.0, 2.0, 3.0, 4.0])
    classifier = SuperNeuronClassifier(profile)
    requirements = classifier.requirements
    assert list(requirements) == [(0, 'residual'), (1, 'residual'), (1, 'mlp')]
    assert requirements[(1, 'mlp')].tolist() == [3, 90]
    assert requirements[(0, 'residual')].tolist() == [7]
    assert classifier.positions[(1, 'mlp')].tolist() == [2, 0]
    values = np.array([[0.5, 0.5, -0.5, -0.5], [-1.0, -1.0, 1.0, 1.0]])  # profile order
    acts = {(1, 'mlp'): values[:, [2, 0]], (0, 'residual'): values[:, [1]],
            (1, 'residual'): values[:, [3]], (2, 'mlp'): np.zeros((2, 9))}  # extras are ignored
    np.testing.assert_array_equal(classifier.assemble(acts), values)
    assert classifier.predict_from_sites(acts) == classifier.predict(values)


def test_bad_activations_raise_data_errors():
    """Wrong shapes, missing sites and NaN raise DataError with a hint."""
    classifier = SuperNeuronClassifier(_stumps([0.0, 0.0], [1, 1], site=[0, 1]))
    with pytest.raises(DataError, match='in readout order'):
        classifier.predict(np.zeros((1, 3)))
    with pytest.raises(DataError, match='NaN'):
        classifier.predict(np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match='missing'):
        classifier.predict_from_sites({(0, 'residual'): np.zeros((1, 1))})
    with pytest.raises(DataError, match='same batch'):
        classifier.predict_from_sites({(0, 'residual'): np.zeros((1, 1)),
                                       (0, 'mlp'): np.zeros((2, 1))})


def test_a_profile_calibrated_with_probing_answers_new_samples(tmp_path):
    """Probe, keep the top 3 scalars, save and reload the profile: it classifies new data."""
    gen = torch.Generator().manual_seed(5)

    def sample(n):
        y = torch.randint(0, 2, (n,), generator=gen)
        x = torch.randn(n, 60, generator=gen)
        for column, gain in ((7, 3.0), (21, -3.0), (40, 2.5)):
            x[:, column] += gain * y
        return x, y

    x, y = sample(200)
    scores = ranking.heldout_scores(x, y, 2, folds=5, seed=0)
    best = ranking.top_k(scores, 3)
    assert sorted(best.tolist()) == [7, 21, 40]
    fit = probing.fit_stumps(x[:, best], y)
    means = probing.fit_means(x[:, best], y, 2).T  # [k, 2]
    profile = Profile.from_vote(
        task=YES_NO, prompt='p', exit_layer=0, kind='stump', layer=[0, 0, 0], site=[0, 0, 0],
        index=best.tolist(), threshold=fit.threshold.numpy(), polarity=fit.polarity.numpy(),
        means=means.numpy(), weight=scores[best].numpy(), fingerprint=FINGERPRINT,
        metrics={'heldout_accuracy': float(scores[best[0]])})
    classifier = SuperNeuronClassifier(Profile.load(profile.save(tmp_path / 'red_present')))
    new_x, new_y = sample(300)
    labels = np.array([p.label_index for p in classifier.predict(new_x[:, best].numpy())])
    votes = probing.predict_stumps(new_x[:, best], fit).numpy()  # [300, 3]
    weight = scores[best].numpy()
    share_1 = (votes * weight).sum(axis=1) / weight.sum()
    decided = np.abs(share_1 - 0.5) > 1e-9  # ties go to the margin rule, tested above
    np.testing.assert_array_equal(labels[decided], (share_1 > 0.5)[decided].astype(int))
    assert (labels == new_y.numpy()).mean() > 0.9


def test_single_exit_profiles_answer_through_the_layered_api():
    """A format-1 profile has one readout, at its exit layer, and it is always confident."""
    classifier = SuperNeuronClassifier(_stumps([0.0, 1.0, 2.0], [1, 1, -1]))
    assert classifier.layers == (1,) and classifier.exit_layer == 1
    plan = classifier.requirements_at(1)
    assert {k: v.tolist() for k, v in plan.items()} == {(0, 'residual'): [0, 1, 2]}
    acts = {(0, 'residual'): np.array([[0.5, 0.5, 0.5]])}
    at = classifier.predict_at(1, acts)[0]
    assert at == classifier.predict_from_sites(acts)[0] and at.confident and at.exit_layer == 1
    with pytest.raises(DataError, match='no readout at layer 0'):
        classifier.requirements_at(0)
