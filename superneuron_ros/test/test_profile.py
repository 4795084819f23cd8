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

"""Tests of profile folders: round trip, every load error, fingerprints and discovery."""

import dataclasses
import json

import numpy as np
import pytest
from safetensors.numpy import save_file
from superneuron_ros.errors import ProfileError, ProfileMismatchError
from superneuron_ros.method.probing import Neuron
from superneuron_ros.method.profiles import (find_profiles, METADATA_FILE, ModelFingerprint,
                                             NEURONS_FILE, Profile)
from superneuron_ros.method.readouts import CONSTANT_THRESHOLD, Readout
from superneuron_ros.method.tasks import TaskSpec


def _fingerprint(**kwargs) -> ModelFingerprint:
    """Return a small LLaVA fingerprint, with fields overridden by kwargs."""
    fields = {'architecture': 'LlavaForConditionalGeneration', 'model_type': 'llava',
              'num_layers': 4, 'hidden_size': 64, 'intermediate_size': 128,
              'quantization': 'nf4', 'weights_hash': 'ab12cd34' * 8, 'hash_layer': 1}
    fields.update(kwargs)
    return ModelFingerprint(**fields)


def _profile(**kwargs) -> Profile:
    """Return a valid 3-neuron stump profile, with fields overridden by kwargs."""
    fields = {
        'task': TaskSpec('red_present', 'Is there a red shape?', ('yes', 'no'),
                         aliases={'yes': ('yeah',)}),
        'prompt': 'USER: <image>\nIs there a red shape? Answer yes or no. ASSISTANT:',
        'exit_layer': 1, 'kind': 'stump',
        'layer': [0, 1, 1], 'site': [0, 1, 0], 'index': [5, 100, 63],
        'threshold': [0.25, -float('inf'), 3.5], 'polarity': [1, -1, 1],
        'means': [[0.0, 1.0], [np.nan, np.nan], [2.0, 4.0]], 'weight': [1.0, 0.5, 2.0],
        'fingerprint': _fingerprint(),
        'metrics': {'heldout_accuracy': np.float64(0.875), 'per_layer': [0.5, float('nan')],
                    'k': np.int64(3)}}
    fields.update(kwargs)
    return Profile.from_vote(**fields)


def _edit_json(path, **changes):
    """Rewrite a profile's profile.json with some keys changed (None deletes the key)."""
    meta = json.loads((path / METADATA_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (path / METADATA_FILE).write_text(json.dumps(meta))


def _write_arrays(path, **changes):
    """Rewrite a profile's arrays with some replaced, and drop the checksum."""
    profile = Profile.load(path)
    arrays = {name: np.array(a) for name, a in profile.arrays().items()}
    arrays.update(changes)
    save_file(arrays, str(path / NEURONS_FILE))
    _edit_json(path, neurons_sha256=None)


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    """A saved profile loads back equal, with the stored dtypes and JSON-clean metrics."""
    profile = _profile()
    path = profile.save(tmp_path / 'red_present')
    assert sorted(p.name for p in path.iterdir()) == [NEURONS_FILE, METADATA_FILE]
    assert [p.name for p in tmp_path.iterdir()] == ['red_present']  # no temporary left
    loaded = Profile.load(path)
    assert loaded == profile
    assert loaded.task == profile.task and loaded.fingerprint == profile.fingerprint
    assert loaded.prompt == profile.prompt and loaded.created == profile.created
    for name, array in profile.arrays().items():
        assert loaded.arrays()[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded.arrays()[name], array)
    assert loaded.threshold[1] == CONSTANT_THRESHOLD  # format 1's -inf constant stump
    assert loaded.metrics == {'heldout_accuracy': 0.875, 'per_layer': [0.5, None], 'k': 3}
    assert loaded.neurons == [Neuron(0, 'residual', 5), Neuron(1, 'mlp', 100),
                              Neuron(1, 'residual', 63)]
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta['format_version'] == 2 and meta['kind'] == 'stump'
    assert meta['readouts'] == [{'layer': 1, 'kind': 'stump', 'num_neurons': 3,
                                 'temperature': 1.0, 'min_confidence': 0.0}]
    assert (path / METADATA_FILE).read_text().startswith('{\n  ')  # indented
    assert loaded != dataclasses.replace(profile, prompt='another')


def test_from_neurons_and_means_profiles(tmp_path):
    """Profiles can be built from named neurons, and multi-class means profiles round-trip."""
    task = TaskSpec('colour', 'Which colour is the shape?', ('red', 'green', 'blue'))
    profile = Profile.from_neurons(
        [Neuron(0, 'mlp', 3), Neuron(0, 'residual', 3)], task=task, prompt='p', exit_layer=0,
        kind='means', threshold=[np.nan, np.nan], polarity=[0, 0],
        means=[[0.0, 1.0, 2.0], [5.0, 3.0, 1.0]], weight=[1.0, 1.0],
        fingerprint=_fingerprint(hash_layer=0))
    assert profile.site.tolist() == [1, 0]
    assert Profile.load(profile.save(tmp_path / 'colour')) == profile


def test_save_refuses_to_clobber_unless_asked(tmp_path):
    """An existing profile is replaced only with overwrite; other folders never are."""
    path = _profile().save(tmp_path / 'p')
    with pytest.raises(ProfileError, match='already exists'):
        _profile().save(path)
    changed = _profile(prompt='another prompt')
    changed.save(path, overwrite=True)
    assert Profile.load(path).prompt == 'another prompt'
    assert [p.name for p in tmp_path.iterdir()] == ['p']
    other = tmp_path / 'photos'
    other.mkdir()
    (other / 'keep.txt').write_text('mine')
    with pytest.raises(ProfileError, match='not a profile folder'):
        _profile().save(other, overwrite=True)
    assert (other / 'keep.txt').read_text() == 'mine'


def test_arrays_are_read_only(tmp_path):
    """A profile's arrays cannot be changed in place."""
    profile = _profile()
    with pytest.raises(ValueError):
        profile.threshold[0] = 9.0


@pytest.mark.parametrize('damage, message', [
    (lambda p: (p / METADATA_FILE).unlink(), 'lacks profile.json'),
    (lambda p: (p / NEURONS_FILE).unlink(), 'lacks neurons.safetensors'),
    (lambda p: (p / METADATA_FILE).write_text('{"format_version": 1, '), 'not readable JSON'),
    (lambda p: (p / METADATA_FILE).write_text('[1, 2]'), 'JSON object'),
    (lambda p: _edit_json(p, format_version=3), 'format version 3'),
    (lambda p: _edit_json(p, format_version=None), 'format version None'),
    (lambda p: (p / NEURONS_FILE).write_bytes(b'\x00' * 40), 'checksum'),
    (lambda p: (_edit_json(p, neurons_sha256=None),
                (p / NEURONS_FILE).write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a"')),
     'not a readable safetensors'),
    (lambda p: _write_arrays(p, **{'r0.weight': np.ones(2, np.float32)}), 'shape'),
    (lambda p: _write_arrays(p, **{'r0.layer': np.array([0, 1], np.int32)}), 'neuron arrays'),
    (lambda p: _write_arrays(p, **{'r0.layer': np.array([0, 1, 1], np.int64)}),
     'expected int32'),
    (lambda p: _write_arrays(p, **{'r0.threshold': np.array([0, np.inf, 1], np.float32)}),
     'finite'),
    (lambda p: _write_arrays(p, **{'r0.weight': np.array([1, np.nan, 1], np.float32)}),
     'finite'),
    (lambda p: _write_arrays(p, **{'r1.weight': np.ones(3, np.float32)}), 'no readout'),
    (lambda p: _edit_json(p, readouts=[{'layer': 1, 'kind': 'stump', 'temperature': None}]),
     'temperature'),
    (lambda p: _edit_json(p, image_size=[0, 3]), 'image_size'),
    (lambda p: _edit_json(p, exit_layer=0), 'end at the exit layer 0'),
    (lambda p: _edit_json(p, task={'name': 'red_present', 'question': 'Colour?',
                                   'labels': ['red', 'green', 'blue']}), 'exactly 2 labels'),
    (lambda p: _write_arrays(p, **{'r0.means': np.zeros((3, 3), np.float32)}), 'shape'),
    (lambda p: _edit_json(p, fingerprint={'architecture': 'x'}), 'missing fields'),
    (lambda p: _edit_json(p, task={'name': 'Bad Name', 'question': 'q', 'labels': ['a', 'b']}),
     'task name'),
    (lambda p: _edit_json(p, prompt=None), 'lacks'),
])
def test_every_load_problem_raises_a_profile_error(tmp_path, damage, message):
    """Missing, corrupt, inconsistent or foreign files raise ProfileError saying what is wrong."""
    path = _profile().save(tmp_path / 'red_present')
    damage(path)
    with pytest.raises(ProfileError, match=message):
        Profile.load(path)


def test_missing_folder_and_file_paths_raise_profile_errors(tmp_path):
    """A path that is not a folder raises ProfileError."""
    with pytest.raises(ProfileError, match='does not exist'):
        Profile.load(tmp_path / 'nowhere')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ProfileError, match='is not a folder'):
        Profile.load(tmp_path / 'file')


@pytest.mark.parametrize('kwargs, message', [
    ({'layer': [0, 2, 1]}, 'layers 0..1'),
    ({'site': [0, 2, 0]}, 'sites'),
    ({'index': [5, 128, 63]}, 'indices'),
    ({'index': [5, 100, 64]}, 'indices'),  # 64 is beyond the residual size
    ({'layer': [1, 1, 1], 'index': [63, 100, 63]}, 'twice'),
    ({'polarity': [1, 0, 1]}, 'polarities'),
    ({'threshold': [0.0, np.nan, 1.0]}, 'NaN'),
    ({'threshold': [0.0, np.inf, 1.0]}, 'infinity'),
    ({'weight': [1.0, np.inf, 1.0]}, 'finite'),
    ({'weight': [1.0, np.nan, 1.0]}, 'finite'),
    ({'weight': [0.0, 0.0, 0.0]}, 'weights'),
    ({'kind': 'forest'}, 'kind'),
    ({'exit_layer': 4}, 'exit_layer'),
    ({'layer': [0.5, 1, 1]}, 'integers'),
    ({'metrics': {'bad': object()}}, 'JSON'),
    ({'kind': 'means'}, 'finite'),
    ({'image_size': (224, -1)}, 'image_size'),
])
def test_inconsistent_profiles_are_refused_on_construction(kwargs, message):
    """Construction validates the arrays against the task and the fingerprint."""
    with pytest.raises(ProfileError, match=message):
        _profile(**kwargs)


def test_fingerprint_round_trip_and_differences():
    """Fingerprints survive to_dict/from_dict and list every differing field."""
    fp = _fingerprint()
    assert ModelFingerprint.from_dict(fp.to_dict()) == fp
    other = _fingerprint(num_layers=32, quantization='int8')
    assert fp.differences(other) == ['num_layers: 4 vs 32', "quantization: 'nf4' vs 'int8'"]
    assert fp.differences(fp) == []
    with pytest.raises(ProfileError, match='quantization'):
        _fingerprint(quantization='gptq')
    with pytest.raises(ProfileError, match='hash_layer'):
        _fingerprint(hash_layer=4)
    with pytest.raises(ProfileError, match='hexadecimal'):
        _fingerprint(weights_hash='not-hex')


def test_check_compatible_names_each_differing_field():
    """A mismatch names the profile, both models, every differing field and the fix."""
    profile = _profile()
    profile.check_compatible(_fingerprint())
    loaded = _fingerprint(architecture='Qwen2VLForConditionalGeneration', model_type='qwen2_vl',
                          num_layers=28, weights_hash='ff' * 32)
    with pytest.raises(ProfileMismatchError) as info:
        profile.check_compatible(loaded)
    text = str(info.value)
    assert "profile 'red_present'" in text
    assert 'LlavaForConditionalGeneration (llava) with 4 layers, nf4, weights ab12cd34' in text
    assert 'Qwen2VLForConditionalGeneration (qwen2_vl) with 28 layers' in text
    for field in ('architecture', 'model_type', 'num_layers: 4 vs 28', 'weights_hash'):
        assert field in text
    assert 'quantization' not in text and 'hidden_size' not in text  # equal fields unnamed
    assert 'recalibrate with `superneuron calibrate`' in text


def test_find_profiles_accepts_profile_folders_and_folders_of_them(tmp_path):
    """Profile folders and their parents are found in order, each once; anything else fails."""
    root = tmp_path / 'profiles'
    b = _profile().save(root / 'b_task')
    a = _profile().save(root / 'a_task')
    (root / 'notes').mkdir()
    (root / 'readme.txt').write_text('x')
    single = _profile().save(tmp_path / 'single')
    assert find_profiles([root]) == [a, b]
    assert find_profiles([str(single), root, b]) == [single, a, b]
    with pytest.raises(ProfileError, match='neither'):
        find_profiles([root / 'notes'])
    with pytest.raises(ProfileError, match='does not exist'):
        find_profiles([tmp_path / 'missing'])
    with pytest.raises(ProfileError, match='is not a folder'):
        find_profiles([root / 'readme.txt'])


def _write_format_1(path, profile):
    """Write `profile` (a single vote) as the landed format-1 folder did."""
    path.mkdir()
    threshold = np.where(profile.threshold == CONSTANT_THRESHOLD, -np.inf, profile.threshold)
    arrays = {'layer': profile.layer, 'site': profile.site, 'index': profile.index,
              'threshold': threshold.astype(np.float32), 'polarity': profile.polarity,
              'means': profile.means, 'weight': profile.weight}
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / NEURONS_FILE))
    meta = profile.metadata()
    for key in ('readouts', 'image_size'):
        meta.pop(key)
    meta['format_version'] = 1
    (path / METADATA_FILE).write_text(json.dumps(meta))
    return path


def test_format_1_profiles_load_and_answer_as_before(tmp_path):
    """A format-1 folder (with -inf constant stumps) loads as one raw-share vote readout."""
    profile = _profile()
    path = _write_format_1(tmp_path / 'red_present', profile)
    loaded = Profile.load(path)
    assert loaded.format_version == 1 and len(loaded.readouts) == 1
    assert loaded.readouts[0].layer == 1 and loaded.kind == 'stump'
    assert loaded.threshold[1] == CONSTANT_THRESHOLD
    values = np.array([[1.0, 0.0, 5.0], [0.0, 0.0, 0.0], [1.0, 9.0, 0.0]])
    # The format-1 rule: stump 0 and 2 vote 1 above their thresholds, stump 1 (constant,
    # polarity -1) always votes 0; shares are weight fractions (weights 1, 0.5, 2).
    winners, scores = loaded.exit_readout.answer(values)
    np.testing.assert_allclose(scores, [[0.5 / 3.5, 3.0 / 3.5], [1.0, 0.0],
                                        [2.5 / 3.5, 1.0 / 3.5]])
    assert winners.tolist() == [1, 0, 0]
    resaved = Profile.load(loaded.save(tmp_path / 'again'))
    assert resaved.format_version == 2 and resaved.arrays().keys() == loaded.arrays().keys()


def test_format_2_profiles_hold_layered_readouts(tmp_path):
    """Several readouts, a linear one among them, round-trip with thresholds and image size."""
    base = _profile()
    early = Readout(layer=0, kind='linear', neuron_layer=[0, 0], site=[0, 1], index=[3, 4],
                    params={'center': [0.5, -1.0], 'scale': [2.0, 1.0],
                            'coef': [[1.0, -1.0], [0.0, 2.0]], 'intercept': [0.1, -0.1]},
                    num_labels=2, temperature=1.5, min_confidence=0.9)
    profile = dataclasses.replace(base, readouts=(early, base.exit_readout), image_size=(336, 336))
    loaded = Profile.load(profile.save(tmp_path / 'p'))
    assert loaded == profile and loaded.image_size == (336, 336)
    assert [r.layer for r in loaded.readouts] == [0, 1]
    assert loaded.readouts[0].temperature == 1.5 and loaded.readouts[0].min_confidence == 0.9
    with pytest.raises(ProfileError, match='ascending'):
        dataclasses.replace(base, readouts=(base.exit_readout, early))
    with pytest.raises(ProfileError, match='finite'):
        Readout(layer=0, kind='linear', neuron_layer=[0], site=[0], index=[3],
                params={'center': [np.inf], 'scale': [1.0], 'coef': [[1.0, 0.0]],
                        'intercept': [0.0, 0.0]}, num_labels=2)


def test_a_resolution_mismatch_is_refused():
    """A profile taken at one image size refuses a model set to another."""
    profile = _profile(image_size=(336, 336))
    profile.check_image_size((336, 336))
    with pytest.raises(ProfileMismatchError, match='336x336.*224x224'):
        profile.check_image_size((224, 224))
    with pytest.raises(ProfileMismatchError, match="processor's default"):
        _profile().check_image_size((224, 224))
