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

"""Quantization backends, the quantized-modules setting and the quantization-mismatch override."""

import logging

from calibrated_fixture import build_calibrated
import numpy as np
import pytest
from superneuron_ros.errors import ProfileMismatchError
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.profiles import Profile
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.config import LoadConfig
from superneuron_ros.vlm.fingerprint import ModelFingerprint
from superneuron_ros.vlm.loading import load_model
from superneuron_ros.vlm.quantization import is_quantized, quiet_backend_notices
import torch

IMAGE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def nf4_setup(tmp_path_factory):
    """Return a tiny LLaVA with a red_present profile calibrated in nf4 (language layers)."""
    return build_calibrated(tmp_path_factory.mktemp('nf4'), quantization='nf4', n=200)


def _split(loaded) -> tuple[list[bool], list[bool]]:
    """Return is_quantized of the decoder layers' linears and of every other linear."""
    layers = {id(m) for m in loaded.family.decoder_layers(loaded.base_model).modules()}
    linears = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    return ([is_quantized(m) for m in linears if id(m) in layers],
            [is_quantized(m) for m in linears if id(m) not in layers])


@pytest.mark.parametrize('quantization', ['nf4', 'torchao-int4'])
def test_quantized_modules_setting(nf4_setup, quantization):
    """Default: decoder layers only; 'all': the vision tower and projector too."""
    for modules, others in (('language', False), ('all', True)):
        loaded = load_model(LoadConfig(str(nf4_setup.model_dir), quantization=quantization,
                                       device='cpu', exit_layer=1, quantize_modules=modules))
        decoder, rest = _split(loaded)
        assert decoder and all(decoder)
        assert rest and all(value == others for value in rest)


def test_profile_records_the_quantization(nf4_setup):
    """Calibration writes the quantization and the quantized modules into the fingerprint."""
    fingerprint = Profile.load(nf4_setup.profile_dir).fingerprint
    assert (fingerprint.quantization, fingerprint.quantized_modules) == ('nf4', 'language')


@pytest.mark.parametrize('quantization, modules', [('none', 'language'), ('nf4', 'all'),
                                                   ('torchao-int4', 'language')])
def test_another_quantization_is_refused_by_default(nf4_setup, quantization, modules):
    """A profile runs only under the quantization it was calibrated with, unless allowed."""
    config = LoadConfig(str(nf4_setup.model_dir), quantization=quantization, device='cpu',
                        quantize_modules=modules)
    with pytest.raises(ProfileMismatchError, match='Only the quantization differs.*'
                       'allow_quantization_mismatch'):
        Runtime.load(config, [nf4_setup.profile_dir])


def test_the_override_runs_it_and_says_so(nf4_setup):
    """allow_quantization_mismatch loads the profile under torchao int4 and warns."""
    config = LoadConfig(str(nf4_setup.model_dir), quantization='torchao-int4', device='cpu',
                        allow_quantization_mismatch=True)
    runtime = Runtime.load(config, [nf4_setup.profile_dir])
    try:
        assert runtime.selftest.ok, runtime.selftest.message
        (warning,) = runtime.warnings
        assert "quantization: 'nf4' vs 'torchao-int4'" in warning
        assert 'allow_quantization_mismatch' in warning
        (prediction,) = runtime.answer(IMAGE, ['red_present']).predictions
        assert prediction.label in ('yes', 'no')
    finally:
        runtime.close()


def test_the_override_never_covers_other_weights(nf4_setup, tmp_path):
    """Another checkpoint stays refused with the override: only quantization fields are waived."""
    other = build_model_folder(tmp_path / 'other', 'llava', seed=1)
    config = LoadConfig(str(other), quantization='none', device='cpu',
                        allow_quantization_mismatch=True)
    with pytest.raises(ProfileMismatchError, match='weights_hash'):
        Runtime.load(config, [nf4_setup.profile_dir])


def test_old_fingerprints_load_as_everything_quantized():
    """A fingerprint written before quantized_modules existed: bitsandbytes on every linear."""
    data = {'architecture': 'LlavaForConditionalGeneration', 'model_type': 'llava',
            'num_layers': 4, 'hidden_size': 64, 'intermediate_size': 128,
            'quantization': 'nf4', 'weights_hash': 'ab' * 32, 'hash_layer': 1}
    assert ModelFingerprint.from_dict(data).quantized_modules == 'all'
    unquantized = ModelFingerprint.from_dict({**data, 'quantization': 'none'})
    assert unquantized.quantized_modules == 'none'
    assert ModelFingerprint.from_dict(unquantized.to_dict()) == unquantized


def test_backend_notices_become_one_info_line(caplog):
    """The bitsandbytes 'kernels-community' warning (issue 13) is replaced by one INFO line."""
    quiet_backend_notices()
    notice = logging.getLogger('bitsandbytes.backends.cpu.ops')
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            notice.warning('Failed to load CPU gemm_4bit_forward from kernels-community: %s.',
                           "No module named 'kernels'")
        notice.warning('another bitsandbytes warning')
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ['another bitsandbytes warning']
    infos = [r for r in caplog.records if r.name == 'superneuron_ros.vlm.quantization']
    assert len(infos) <= 1  # once per process: an earlier load may have said it already
