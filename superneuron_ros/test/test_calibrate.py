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

"""Calibration: the held-out protocol, exit-layer choice, profiles that load in the runtime."""

import json
from pathlib import Path
from unittest.mock import patch

from calibrated_fixture import build_calibrated, torch_threads
import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import DataError, LayerRangeError, ProfileMismatchError
from superneuron_ros.lab.scenes import TASKS, write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import (calibrate, CalibrationError, CalibrationOptions,
                                              collect_activations, search_neurons)
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import Example, load_image, load_labelled_set, TaskSpec
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.loading import LoadConfig
import torch

pytest_plugins = ['calibrated_fixture']  # the calibrated_red_present fixture
RED = TASKS['red_present']


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny models run many times faster on one thread of a busy machine."""
    with torch_threads(1):
        yield


def _runtime_accuracy(runtime: Runtime, examples) -> float:
    hits = [runtime.answer(load_image(ex.image_path), [RED.name]).predictions[0].label_index
            == ex.label_index for ex in examples]
    return float(np.mean(hits))


def test_profile_beats_chance_and_keeps_its_cross_validated_accuracy(calibrated_red_present,
                                                                     tmp_path):
    """CV accuracy is well above chance, the report is complete, fresh scenes agree."""
    setup = calibrated_red_present
    profile = Profile.load(setup.profile_dir)
    report = json.loads((setup.profile_dir / 'report.json').read_text())
    assert (setup.profile_dir / 'report.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    accuracy = profile.metrics['heldout_accuracy']
    assert accuracy >= 0.7 and accuracy == pytest.approx(report['chosen']['accuracy'])
    assert 0 <= profile.exit_layer <= 3 and profile.format_version == 2
    assert [r.layer for r in profile.readouts][-1] == profile.exit_layer
    assert all(set(r.neuron_layer.tolist()) <= set(range(r.layer + 1)) for r in profile.readouts)
    assert [e['layer'] for e in report['per_layer']] == [0, 1, 2, 3]
    assert report['chosen']['exit_layer'] == profile.exit_layer
    entry = report['per_layer'][0]['readouts']
    assert set(entry) == {'vote', 'linear', 'm8', 'm16', 'm32', 'ceiling'}
    assert entry['vote']['folds'] == 10 and 0 <= entry['vote']['std'] < 0.2
    assert 0.0 <= report['reliability']['ece'] <= 0.15
    assert sum(report['reliability']['count']) == 2 * 400
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='none'),
                           [setup.profiles_dir])
    assert runtime.tasks[RED.name].calibration_accuracy == pytest.approx(accuracy)
    write_dataset(tmp_path, n=100, seed=1, size=32, tasks=[RED.name])
    fresh = load_labelled_set(tmp_path / 'red_present.jsonl', RED)
    assert _runtime_accuracy(runtime, fresh) >= 0.68


def test_a_profile_is_refused_by_another_model(calibrated_red_present, tmp_path):
    """The same tiny architecture with other weights fails the fingerprint check."""
    other = build_model_folder(tmp_path / 'other', 'llava', seed=1)
    with pytest.raises(ProfileMismatchError) as info:
        Runtime.load(LoadConfig(str(other), quantization='none'),
                     [calibrated_red_present.profile_dir])
    assert 'weights_hash' in str(info.value) and 'recalibrate' in str(info.value)
    with pytest.raises(ProfileMismatchError, match='quantization'):
        Runtime.load(LoadConfig(str(calibrated_red_present.model_dir), quantization='int8'),
                     [calibrated_red_present.profile_dir])


def test_calibration_is_deterministic_for_a_seed(calibrated_red_present):
    """Two runs with one seed give the same neurons, thresholds and scores; another seed not."""
    setup = calibrated_red_present
    examples = load_labelled_set(setup.data_file, RED)[:160]
    options = CalibrationOptions(quantization='none', baseline=False, progress=False,
                                 max_layer=1)
    first = calibrate(setup.model_dir, RED, examples, options)
    second = calibrate(setup.model_dir, RED, examples, options)
    assert first.profile.arrays().keys() == second.profile.arrays().keys()
    for name, array in first.profile.arrays().items():
        np.testing.assert_array_equal(array, second.profile.arrays()[name], err_msg=name)
    assert first.profile.metrics == second.profile.metrics
    assert first.report['per_layer'] == second.report['per_layer']
    other = calibrate(setup.model_dir, RED, examples,
                      CalibrationOptions(quantization='none', baseline=False, progress=False,
                                         max_layer=1, seed=1))
    assert other.report['per_layer'] != first.report['per_layer']


def _planted_store(n: int = 240, seed: int = 0, strong: dict | None = None):
    """Noise activations for layers 0..2 with informative scalars planted at given places."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2  # [N]
    store = {(layer, site): torch.randn((n, size), generator=gen)
             for layer in range(3) for site, size in (('residual', 16), ('mlp', 24))}
    for (layer, site, index), noise in (strong or {}).items():
        signal = 2.0 * labels.float() - 1.0 + noise * torch.randn(n, generator=gen)
        store[(layer, site)][:, index] = signal
    return store, labels.numpy()


def _search_options(**kwargs) -> CalibrationOptions:
    return CalibrationOptions(**{'quantization': 'none', 'progress': False, 'k': 5,
                                 'sizes': (2, 4), 'repeats': 1, 'folds': 4, 'rank_folds': 3,
                                 **kwargs})


def _neurons(readout):
    return {(int(la), ('residual', 'mlp')[int(si)], int(ix))
            for la, si, ix in zip(readout.neuron_layer, readout.site, readout.index)}


def test_search_finds_planted_neurons_and_exits_at_the_first_layer_holding_them():
    """Neurons planted in layer 1 are found, layer 0 is noise, and the exit is layer 1."""
    planted = {(1, 'mlp', 7): 0.3, (1, 'mlp', 3): 0.5, (1, 'residual', 2): 0.5,
               (1, 'residual', 11): 0.6, (1, 'mlp', 20): 0.6}
    store, labels = _planted_store(strong=planted)
    search = search_neurons(store, labels, RED, _search_options(readout='vote'))
    assert search.exit_layer == 1 and _neurons(search.readouts[-1]) == set(planted)
    layers = search.selection.per_layer
    assert layers[1]['selection'] >= 0.97 and layers[0]['selection'] < 0.7  # noise only
    assert layers[1]['readouts']['ceiling']['mean'] >= 0.9  # layer 1 alone holds it
    assert layers[2]['readouts']['ceiling']['mean'] < 0.7  # layer 2 alone does not
    assert all(r.kind == 'stump' for r in search.readouts)


def test_a_low_variance_neuron_is_found_in_float32():
    """
    A layer-0 scalar with |mean|/std about 300 whose classes differ by 3 std is found.

    It hides among 2,000 scalars of the same magnitude and spread, as early-layer scalars at the
    last prompt position do (float16 keeps about 5 steps per standard deviation of it).
    """
    gen = torch.Generator().manual_seed(3)
    n = 200
    labels = torch.arange(n) % 2
    noise = 3.0 + 0.01 * torch.randn((n, 2000), generator=gen)  # |mean|/std = 300
    noise[:, 1234] = 3.0 + 0.01 * (torch.randn(n, generator=gen) + 3.0 * labels.float())
    others = 3.0 + 0.01 * torch.randn((n, 64), generator=gen)
    store = {(0, 'residual'): noise.float(), (0, 'mlp'): others}
    search = search_neurons(store, labels.numpy(), RED,
                            _search_options(readout='vote', k=1, ceiling=False))
    assert _neurons(search.readouts[-1]) == {(0, 'residual', 1234)}
    assert search.selection.per_layer[0]['selection'] >= 0.85  # 3 std apart: about 0.93


def test_collect_activations_keeps_float32():
    """Captured values are stored as float32, bit for bit."""
    class Engine:
        def capture(self, images, prompts, wanted):
            return {key: torch.full((len(images), 3), 3.0001, dtype=torch.float32)
                    for key in wanted}

    image = Path(__file__).parent / 'no-image.png'
    examples = [Example(image, 'red_present', 'q', 'yes', 0)] * 3
    with patch('superneuron_ros.method.calibrate.load_image', lambda path: None):
        store = collect_activations(Engine(), examples, 'p', [0], ['residual'], 2, False)
    assert store[(0, 'residual')].dtype == torch.float32
    assert float(store[(0, 'residual')][0, 0]) == float(torch.tensor(3.0001))


def test_linear_readout_reads_a_multiclass_signal_no_single_scalar_separates():
    """Three classes on a circle seen through mixed scalars: the linear readout wins."""
    rng = np.random.default_rng(0)
    n = 300
    labels = np.arange(n) % 3
    angle = 2 * np.pi * labels / 3
    latent = np.stack([np.cos(angle), np.sin(angle)], axis=1) + 0.15 * rng.normal(size=(n, 2))
    mixing = rng.normal(size=(2, 16))
    x = rng.normal(size=(n, 30))
    x[:, :16] = latent @ mixing + 1.5 * rng.normal(size=(n, 16))  # each scalar weak and noisy
    store = {(0, 'residual'): torch.from_numpy(x).float(),
             (0, 'mlp'): torch.from_numpy(rng.normal(size=(n, 8))).float()}
    task = TaskSpec('colour', 'Which?', ('a', 'b', 'c'))
    search = search_neurons(store, labels, task, _search_options(k=9, sizes=(8, 16)))
    scores = search.selection.per_layer[0]['readouts']
    best_single = search.final[0]['neurons'][0]['cv_score']
    assert scores['linear']['mean'] >= 0.88 and scores['vote']['mean'] <= \
        scores['linear']['mean'] - 0.05
    assert best_single < 0.75
    assert search.readouts[-1].kind == 'linear'


def test_cross_validation_never_fits_on_the_sample_it_scores(monkeypatch):
    """Ranking, the vote's fits, m and L2 choice and the linear fits never see the test fold."""
    from superneuron_ros.method import crossval, linear, probing
    n = 120
    store, labels = _planted_store(n=n, strong={(1, 'mlp', 3): 0.5})
    ids = torch.arange(n, dtype=torch.float32)[:, None] * 1000.0
    store = {key: value + ids for key, value in store.items()}  # every value names its sample
    state = {'test': set()}
    seen = []

    def check(x):
        rows = set(np.round(np.asarray(x, dtype=np.float64)[:, 0] / 1000.0).astype(int).tolist())
        seen.append(len(rows))
        assert not rows & state['test'], 'fitted on a test sample'

    def spy(module, name, arg=0):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            check(args[arg])
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapped)

    rank = crossval.rank_blocks

    def rank_spy(store_, rows, *args, **kwargs):
        state['test'] = set(range(n)) - set(np.asarray(rows).tolist())
        return rank(store_, rows, *args, **kwargs)
    monkeypatch.setattr(crossval, 'rank_blocks', rank_spy)
    for module, name in ((crossval, 'heldout_scores'), (crossval, 'fit_means'),
                         (crossval, 'fit_stumps'), (crossval, 'fit_linear'),
                         (crossval, 'choose_linear'), (linear, 'fit_linear')):
        spy(module, name)
    monkeypatch.setattr(probing, 'fit_stumps', crossval.fit_stumps)
    search = search_neurons(store, labels, RED, _search_options(sizes=(2, 4), folds=3))
    assert seen and max(seen) == n  # the final refit uses every sample, the folds fewer
    assert search.selection.per_layer[1]['readouts']['vote']['folds'] == 3


def test_calibrated_probabilities_match_a_known_accuracy():
    """Temperature and share tables recover the accuracy a synthetic set was built with."""
    from superneuron_ros.method.linear import (expected_calibration_error, fit_temperature,
                                               isotonic_table)
    from superneuron_ros.method.readouts import softmax
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 3)) * 1.5
    truth = np.array([rng.choice(3, p=p) for p in softmax(z)])
    t = fit_temperature(3.0 * z, truth)  # an overconfident readout: three times the logits
    assert t == pytest.approx(3.0, rel=0.15)
    calibrated = softmax(3.0 * z / t)
    ece = expected_calibration_error(calibrated.max(axis=1), calibrated.argmax(axis=1) == truth)
    raw = softmax(3.0 * z)
    before = expected_calibration_error(raw.max(axis=1), raw.argmax(axis=1) == truth)
    assert ece['ece'] < 0.03 < before['ece']
    share = rng.choice([5 / 9, 7 / 9, 1.0], size=6000)
    accuracy = {5 / 9: 0.45, 7 / 9: 0.8, 1.0: 0.97}  # below a coin flip at 5/9, as measured
    correct = rng.random(6000) < np.vectorize(accuracy.get)(share)
    points, table = isotonic_table(share, correct)
    assert points.tolist() == pytest.approx([5 / 9, 7 / 9, 1.0])
    assert table == pytest.approx([0.45, 0.8, 0.97], abs=0.03)


def test_tolerance_trades_accuracy_for_a_shallower_exit_and_a_fixed_exit_is_kept():
    """A weaker neuron in layer 0 wins within a wide tolerance; a fixed exit layer is obeyed."""
    planted = {(0, 'residual', 4): 1.0, (2, 'mlp', 9): 0.05}
    store, labels = _planted_store(strong=planted)
    options = {'k': 1, 'readout': 'vote', 'ceiling': False}
    strict = search_neurons(store, labels, RED, _search_options(tolerance=0.0, **options))
    loose = search_neurons(store, labels, RED, _search_options(tolerance=0.3, **options))
    assert strict.exit_layer == 2 and strict.selection.per_layer[2]['selection'] == 1.0
    assert loose.exit_layer == 0 and 0.7 <= loose.selection.per_layer[0]['selection'] < 1.0
    fixed = search_neurons(store, labels, RED, _search_options(exit_layer=1, **options))
    assert fixed.exit_layer == 1 and _neurons(fixed.readouts[-1]) == {(0, 'residual', 4)}


def test_anytime_readouts_stop_early_only_when_as_accurate_as_the_exit():
    """A clean layer-2 signal and a noisier layer-0 one: confident layer-0 answers stop early."""
    planted = {(0, 'residual', 4): 0.8, (2, 'mlp', 9): 0.05}
    store, labels = _planted_store(n=400, strong=planted)
    search = search_neurons(store, labels, RED, _search_options(tolerance=0.0, ceiling=False))
    assert search.exit_layer == 2
    readouts = search.readouts
    assert [r.layer for r in readouts][0] == 0 and 0.5 < readouts[0].min_confidence <= 1.0
    anytime = search.selection.anytime
    exit_accuracy = search.selection.per_layer[2]['selection']
    assert 1.0 <= anytime['mean_layers'] < 3.0
    assert anytime['accuracy'] >= exit_accuracy - 0.02


@pytest.mark.parametrize('field, value', [
    ('sites', ('residual', 'attention')), ('sites', ()), ('k', 0), ('folds', 1),
    ('repeats', 0), ('sizes', ()), ('sizes', (0, 8)), ('readout', 'forest'),
    ('exit_layer', 'deepest'), ('exit_layer', -1), ('tolerance', -0.1), ('metric', 'f1'),
    ('prompt_template', 'no question here'), ('prompt_template', '{question} {colour}'),
    ('quantization', 'int4'), ('batch_size', 0),
    ('max_layer', -2)])
def test_bad_options_are_refused_naming_the_field(field, value):
    """Every invalid option raises CalibrationError whose message names the field."""
    with pytest.raises(CalibrationError, match=field.split('_')[0]):
        CalibrationOptions(**{field: value})


def test_a_fixed_exit_layer_must_lie_within_the_search():
    """A fixed exit deeper than the searched layers is refused; options normalise."""
    with pytest.raises(CalibrationError, match='deeper than max_layer'):
        CalibrationOptions(exit_layer=3, max_layer=2)
    options = CalibrationOptions(sites=['mlp', 'residual'], k=7, sizes=(16, 8, 16))
    assert options.sites == ('residual', 'mlp') and options.sizes == (8, 16)


def test_bad_layers_and_too_little_data_are_refused(calibrated_red_present):
    """Layers beyond the model and sets too small for the protocol raise clear errors."""
    setup = calibrated_red_present
    examples = load_labelled_set(setup.data_file, RED)
    with pytest.raises(LayerRangeError, match='4 decoder layers'):
        calibrate(setup.model_dir, RED, examples, CalibrationOptions(max_layer=4))
    few = [ex for ex in examples if ex.label == 'yes'][:2] + \
        [ex for ex in examples if ex.label == 'no'][:2]
    with pytest.raises(DataError, match='add examples'):
        calibrate(setup.model_dir, RED, few, CalibrationOptions(quantization='none'))


def test_multiclass_task_gives_a_means_profile_the_runtime_answers(tmp_path,
                                                                   calibrated_red_present):
    """shape_count (four labels) is calibrated with 1-D class means and answered with scores."""
    setup = build_calibrated(tmp_path, task_name='shape_count', n=120, max_layer=1, k=5,
                             sizes=(4, 8), repeats=1, readout='vote',
                             model_dir=calibrated_red_present.model_dir)
    profile = Profile.load(setup.profile_dir)
    assert profile.kind == 'means' and profile.means.shape == (5, 4)
    assert np.isfinite(profile.means).all() and profile.exit_layer <= 1
    assert 'share_points' in profile.exit_readout.params  # calibrated vote shares
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='none'),
                           [setup.profile_dir])
    example = load_labelled_set(setup.data_file, setup.task)[0]
    prediction = runtime.answer(load_image(example.image_path), ['shape_count']).predictions[0]
    assert prediction.labels == ('1', '2', '3', '4') and sum(prediction.scores) == \
        pytest.approx(1.0)


def test_nf4_profile_loads_in_an_nf4_runtime(tmp_path, calibrated_red_present):
    """A 4-bit calibration records nf4, answers through an nf4 runtime and beats chance."""
    setup = build_calibrated(tmp_path, n=160, quantization='nf4', max_layer=1, repeats=1,
                             model_dir=calibrated_red_present.model_dir, baseline=True)
    profile = Profile.load(setup.profile_dir)
    assert profile.fingerprint.quantization == 'nf4'
    assert profile.metrics['heldout_accuracy'] >= 0.6
    baseline = setup.report['baseline']
    assert baseline['num_examples'] == 160 == int(np.sum(baseline['confusion']))
    assert baseline['accuracy'] == pytest.approx(np.trace(np.array(baseline['confusion'])[:, :2])
                                                 / 160)
    assert profile.metrics['baseline_accuracy'] == baseline['accuracy']
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='nf4'),
                           [setup.profile_dir])
    assert runtime.selftest.ok
    examples = load_labelled_set(setup.data_file, RED)[:60]
    assert _runtime_accuracy(runtime, examples) >= 0.6


def test_cli_calibrate_writes_profile_report_and_table(calibrated_red_present, tmp_path,
                                                       capsys):
    """`superneuron calibrate` runs end to end, then refuses to overwrite without --force."""
    setup = calibrated_red_present
    out = tmp_path / 'profile'
    argv = ['calibrate', '--model', str(setup.model_dir), '--task', str(setup.task_file),
            '--data', str(setup.data_file), '--out', str(out), '--quantization', 'none',
            '--max-layer', '1', '--k', '5', '--sizes', '4,8', '--repeats', '1', '--no-progress']
    assert main(argv + ['--no-baseline']) == 0
    printed = capsys.readouterr().out
    assert '<- exit' in printed and 'profile written to' in printed
    assert Profile.load(out).task == RED
    report = json.loads((out / 'report.json').read_text())
    assert report['options']['k'] == 5 and report['options']['sizes'] == [4, 8]
    assert report['baseline'] is None
    assert main(argv) == 2  # exists, no --force
    assert main(argv + ['--force', '--exit-layer', '0']) == 0
    assert Profile.load(out).exit_layer == 0
    assert 'first token restricted' in capsys.readouterr().out


def test_a_test_set_is_scored_once_by_the_final_profile(calibrated_red_present):
    """--test examples are never calibrated on; the report scores them with the profile."""
    setup = calibrated_red_present
    examples = load_labelled_set(setup.data_file, RED)
    options = CalibrationOptions(quantization='none', baseline=False, progress=False,
                                 max_layer=1, repeats=1, sizes=(4, 8))
    result = calibrate(setup.model_dir, RED, examples[:160], options, examples[300:380])
    test = result.report['test']
    assert test['num_examples'] == 80 and sum(map(sum, test['fixed']['confusion'])) == 80
    assert test['fixed']['accuracy'] >= 0.6 and 0.0 <= test['fixed']['ece'] <= 0.3
    assert 1.0 <= test['anytime']['mean_layers'] <= result.profile.exit_layer + 1
    assert result.report['data']['num_examples'] == 160
