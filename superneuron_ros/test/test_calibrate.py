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

from calibrated_fixture import build_calibrated, torch_threads
import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import DataError, LayerRangeError, ProfileMismatchError
from superneuron_ros.lab.scenes import TASKS, write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import (calibrate, CalibrationError, CalibrationOptions,
                                              search_neurons, split_heldout)
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import load_image, load_labelled_set
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


def test_profile_beats_chance_and_keeps_its_heldout_accuracy(calibrated_red_present, tmp_path):
    """Held-out accuracy is well above chance, reproduced by the runtime and on fresh scenes."""
    setup = calibrated_red_present
    profile = Profile.load(setup.profile_dir)
    report = json.loads((setup.profile_dir / 'report.json').read_text())
    assert (setup.profile_dir / 'report.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    heldout = profile.metrics['heldout_accuracy']
    assert heldout >= 0.7 and heldout == pytest.approx(report['chosen']['accuracy'])
    assert 0 <= profile.exit_layer <= 3 and len(profile.index) == 9
    assert set(profile.layer.tolist()) <= set(range(profile.exit_layer + 1))
    assert [e['layer'] for e in report['per_layer']] == [0, 1, 2, 3]
    assert report['chosen']['exit_layer'] == profile.exit_layer
    assert set(report['per_layer'][0]['ensembles']) == {'residual', 'mlp', 'residual+mlp'}

    examples = load_labelled_set(setup.data_file, RED)
    labels = torch.tensor([ex.label_index for ex in examples])
    _, held = split_heldout(labels, 0.25, seed=0)
    assert len(held) == report['data']['num_heldout']
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='none'),
                           [setup.profiles_dir])
    assert runtime.tasks[RED.name].calibration_accuracy == pytest.approx(heldout)
    # The profile is exactly the classifier scored on the held-out split (float16 storage aside).
    assert _runtime_accuracy(runtime, [examples[i] for i in held.tolist()]) == \
        pytest.approx(heldout, abs=0.03)
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
    return {key: value.half() for key, value in store.items()}, labels


def _search_options(**kwargs) -> CalibrationOptions:
    return CalibrationOptions(**{'quantization': 'none', 'progress': False, 'k': 5,
                                 'report_k': (1, 5), **kwargs})


def test_search_finds_planted_neurons_and_exits_at_the_first_layer_holding_them():
    """Neurons planted in layer 1 are found first, layer 0 is noise, and the exit is layer 1."""
    planted = {(1, 'mlp', 7): 0.3, (1, 'mlp', 3): 0.5, (1, 'residual', 2): 0.5,
               (1, 'residual', 11): 0.6, (1, 'mlp', 20): 0.6}
    store, labels = _planted_store(strong=planted)
    search = search_neurons(store, labels, 180, RED, 'prompt', _search_options())
    found = {(b.layer, b.site, int(b.index[j])) for b, j in search.chosen}
    assert found == set(planted)
    first, j = search.chosen[0]
    assert (first.layer, first.site, int(first.index[j])) == (1, 'mlp', 7)
    assert search.exit_layer == 1 and search.heldout['accuracy'] >= 0.95
    assert search.per_layer[0]['selection'] < 0.8  # noise only
    assert search.per_layer[2]['selection'] == search.per_layer[1]['selection']
    assert sum(map(sum, search.heldout['confusion'])) == 60


def test_tolerance_trades_accuracy_for_a_shallower_exit_and_a_fixed_exit_is_kept():
    """A weaker neuron in layer 0 wins within a wide tolerance; a fixed exit layer is obeyed."""
    planted = {(0, 'residual', 4): 1.0, (2, 'mlp', 9): 0.05}
    store, labels = _planted_store(strong=planted)
    strict = search_neurons(store, labels, 180, RED, 'p', _search_options(k=1, tolerance=0.0))
    loose = search_neurons(store, labels, 180, RED, 'p', _search_options(k=1, tolerance=0.3))
    assert strict.exit_layer == 2 and strict.heldout['accuracy'] == 1.0
    assert loose.exit_layer == 0 and 0.7 <= loose.heldout['accuracy'] < 1.0
    fixed = search_neurons(store, labels, 180, RED, 'p', _search_options(k=1, exit_layer=1))
    assert fixed.exit_layer == 1
    assert [(b.layer, b.site, int(b.index[j])) for b, j in fixed.chosen] == [(0, 'residual', 4)]


def test_skill_vote_keeps_one_strong_neuron_from_being_outvoted():
    """One informative scalar among noise: a skill-weighted vote follows it, majority does not."""
    store, labels = _planted_store(strong={(1, 'mlp', 5): 0.4})
    majority = search_neurons(store, labels, 180, RED, 'p', _search_options(k=9, exit_layer=1))
    skill = search_neurons(store, labels, 180, RED, 'p',
                           _search_options(k=9, exit_layer=1, vote='skill'))
    assert [(b.layer, b.site, int(b.index[j])) for b, j in skill.chosen] == \
        [(b.layer, b.site, int(b.index[j])) for b, j in majority.chosen]
    assert skill.heldout['accuracy'] >= 0.95 > majority.heldout['accuracy']
    assert skill.weight[0] > skill.weight[1:].sum() / 2 and (majority.weight == 1).all()
    assert majority.per_layer[1]['other_vote'] == {'vote': 'skill',
                                                   'score': skill.per_layer[1]['selection']}


@pytest.mark.parametrize('field, value', [
    ('sites', ('residual', 'attention')), ('sites', ()), ('k', 0), ('folds', 1),
    ('heldout_fraction', 1.0), ('exit_layer', 'deepest'), ('exit_layer', -1),
    ('tolerance', -0.1), ('metric', 'f1'), ('vote', 'mean'),
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
    options = CalibrationOptions(sites=['mlp', 'residual'], k=7, report_k=(5, 1))
    assert options.sites == ('residual', 'mlp') and options.report_k == (1, 5, 7)
    assert options.combo == 'residual+mlp'


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
                             report_k=(1, 5), model_dir=calibrated_red_present.model_dir)
    profile = Profile.load(setup.profile_dir)
    assert profile.kind == 'means' and profile.means.shape == (5, 4)
    assert np.isfinite(profile.means).all() and profile.exit_layer <= 1
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='none'),
                           [setup.profile_dir])
    example = load_labelled_set(setup.data_file, setup.task)[0]
    prediction = runtime.answer(load_image(example.image_path), ['shape_count']).predictions[0]
    assert prediction.labels == ('1', '2', '3', '4') and sum(prediction.scores) == \
        pytest.approx(1.0)


def test_nf4_profile_loads_in_an_nf4_runtime(tmp_path, calibrated_red_present):
    """A 4-bit calibration records nf4, answers through an nf4 runtime and beats chance."""
    setup = build_calibrated(tmp_path, n=160, quantization='nf4', max_layer=1,
                             model_dir=calibrated_red_present.model_dir, baseline=True)
    profile = Profile.load(setup.profile_dir)
    assert profile.fingerprint.quantization == 'nf4'
    assert profile.metrics['heldout_accuracy'] >= 0.6
    assert 0.0 <= setup.report['baseline']['accuracy'] <= 1.0
    assert setup.report['baseline']['num_examples'] == setup.report['data']['num_heldout']
    runtime = Runtime.load(LoadConfig(str(setup.model_dir), quantization='nf4'),
                           [setup.profile_dir])
    assert runtime.selftest.ok
    example = load_labelled_set(setup.data_file, RED)[0]
    assert runtime.answer(load_image(example.image_path), [RED.name]).predictions[0].label in \
        ('yes', 'no')


def test_cli_calibrate_writes_profile_report_and_table(calibrated_red_present, tmp_path,
                                                       capsys):
    """`superneuron calibrate` runs end to end, then refuses to overwrite without --force."""
    setup = calibrated_red_present
    out = tmp_path / 'profile'
    argv = ['calibrate', '--model', str(setup.model_dir), '--task', str(setup.task_file),
            '--data', str(setup.data_file), '--out', str(out), '--quantization', 'none',
            '--max-layer', '1', '--k', '5', '--report-k', '1,5', '--no-progress']
    assert main(argv + ['--no-baseline']) == 0
    printed = capsys.readouterr().out
    assert '<- exit' in printed and 'profile written to' in printed
    assert Profile.load(out).task == RED
    report = json.loads((out / 'report.json').read_text())
    assert report['options']['k'] == 5 and report['baseline'] is None
    assert main(argv) == 2  # exists, no --force
    assert main(argv + ['--force', '--exit-layer', '0']) == 0
    assert Profile.load(out).exit_layer == 0
    assert 'first token restricted' in capsys.readouterr().out
