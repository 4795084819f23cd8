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

"""The quantization self-test against the float weights, and a failure failing the load."""

import bitsandbytes
import pytest
from superneuron_ros.errors import QuantizationError
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.config import LoadConfig
from superneuron_ros.vlm.selftest import BOUNDS, run_selftest
import torch

pytest_plugins = ['calibrated_fixture']  # the calibrated_red_present fixture
CPU = torch.device('cpu')
REAL_MATMUL_4BIT = bitsandbytes.matmul_4bit


def _flipped_matmul_4bit(*args, **kwargs):
    """Compute the right numbers into the wrong output columns (a broken kernel: layout bug)."""
    return torch.flip(REAL_MATMUL_4BIT(*args, **kwargs), dims=[-1])


def _failing_matmul_4bit(*args, **kwargs):
    raise RuntimeError('Error named symbol not found at line 90 in file /src/csrc/ops.cu')


@pytest.mark.parametrize('quantization', ['nf4', 'fp4', 'int8', 'torchao-int4'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_every_backend_passes_against_the_float_weights(quantization, dtype):
    """A working kernel passes; its error is the quantization's, not zero (no self-comparison)."""
    result = run_selftest(quantization, CPU, dtype)
    assert result.ok, result.message
    assert 0.001 < result.max_rel_error < BOUNDS[quantization]
    # 4-bit formats lose about a tenth of the product, int8 about a hundredth
    assert result.max_rel_error > (0.05 if quantization != 'int8' else 0.002)


def test_a_broken_kernel_fails_the_selftest(monkeypatch):
    """Output columns in the wrong order run without error but fail the comparison."""
    monkeypatch.setattr(bitsandbytes, 'matmul_4bit', _flipped_matmul_4bit)
    result = run_selftest('nf4', CPU)
    assert not result.ok
    assert result.max_rel_error > 1.0
    assert result.message.startswith('FAILED: nf4 matmul')


def test_a_kernel_that_raises_is_a_quantization_error(monkeypatch):
    """The Jetson failure mode: the first kernel call raises; the error says what to do."""
    monkeypatch.setattr(bitsandbytes, 'matmul_4bit', _failing_matmul_4bit)
    with pytest.raises(QuantizationError, match='named symbol not found.*torchao-int4'):
        run_selftest('nf4', CPU)


def test_a_failed_selftest_fails_the_load_unless_accepted(monkeypatch, calibrated_red_present):
    """Configure fails with the reason; accepting it loads, and the runtime says so."""
    setup = calibrated_red_present
    monkeypatch.setattr(bitsandbytes, 'matmul_4bit', _flipped_matmul_4bit)
    config = LoadConfig(str(setup.model_dir), quantization='nf4', device='cpu',
                        allow_quantization_mismatch=True)  # the profile is unquantized
    with pytest.raises(QuantizationError, match='self-test failed.*accept_failed_selftest'):
        Runtime.load(config, [setup.profile_dir])
    accepted = LoadConfig(str(setup.model_dir), quantization='nf4', device='cpu',
                          allow_quantization_mismatch=True, accept_failed_selftest=True)
    runtime = Runtime.load(accepted, [setup.profile_dir])
    try:
        assert not runtime.selftest.ok
        assert any('self-test failed' in warning for warning in runtime.warnings)
        assert any('allow_quantization_mismatch' in warning for warning in runtime.warnings)
    finally:
        runtime.close()


def test_an_override_in_force_warns_in_diagnostics():
    """The node's model status WARNs with the override for as long as the runtime serves."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from superneuron_ros.node.diagnostics import model_statuses, ModelReport
    report = ModelReport(phase='ready', lifecycle_state='active', selftest_ok=False,
                         selftest_message='FAILED: nf4 matmul',
                         overrides=('serving although the quantization self-test failed',))
    statuses = {status.name: status for status in model_statuses('sn', report)}
    assert statuses['sn: model'].level == DiagnosticStatus.WARN
    assert 'self-test failed' in statuses['sn: model'].message
    assert statuses['sn: quantization self-test'].level == DiagnosticStatus.ERROR
