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
Start-up self-test of bitsandbytes: a real quantized matmul against its dequantized reference.

bitsandbytes can import fine and still fail at its first kernel (e.g. "named symbol not found" on
some Jetson builds), so the node runs this once at start-up and reports the result in its
diagnostics.
"""

from dataclasses import dataclass
import time

from superneuron_ros.errors import QuantizationError
import torch


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of the quantized-matmul self-test."""

    quantization: str
    device: str
    ok: bool
    max_abs_error: float
    max_rel_error: float
    elapsed_ms: float
    message: str


def run_selftest(quantization: str, device: torch.device,
                 compute_dtype: torch.dtype = torch.float32,
                 size: int = 128, tolerance: float = 1e-2) -> SelfTestResult:
    """
    Quantize a random [size, size] layer, multiply, and compare with the dequantized weights.

    Returns a result with ok=False (never raises) when the kernel runs but disagrees; raises
    QuantizationError when bitsandbytes cannot run at all.
    """
    if quantization == 'none':
        return SelfTestResult('none', str(device), True, 0.0, 0.0, 0.0,
                              'not quantized: no self-test needed')
    try:
        import bitsandbytes as bnb
        from bitsandbytes import functional as bnb_functional
    except ImportError as exc:
        raise QuantizationError(f'bitsandbytes failed to import: {exc}; install it or set '
                                'quantization to "none"') from exc
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(size, size, generator=generator) / size ** 0.5  # [out, in]
    inputs = torch.randn(4, size, generator=generator)  # [B, in]
    start = time.perf_counter()
    try:
        if quantization == 'int8':
            layer = bnb.nn.Linear8bitLt(size, size, bias=False, has_fp16_weights=False)
            layer.weight = bnb.nn.Int8Params(weight.clone(), requires_grad=False,
                                             has_fp16_weights=False)
            layer = layer.to(device)
            scale = layer.weight.SCB.float().unsqueeze(1) / 127.0  # [out, 1]
            reference_weight = layer.weight.data.float() * scale
            x = inputs.to(device, torch.float16 if device.type == 'cuda' else compute_dtype)
        else:
            layer = bnb.nn.Linear4bit(size, size, bias=False, compute_dtype=compute_dtype,
                                      quant_type=quantization)
            layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False,
                                             quant_type=quantization)
            layer = layer.to(device)
            reference_weight = bnb_functional.dequantize_4bit(
                layer.weight.data, layer.weight.quant_state).float()
            x = inputs.to(device, compute_dtype)
        with torch.inference_mode():
            output = layer(x).float()
            reference = x.float() @ reference_weight.t()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: B902 - any kernel failure is the finding
        raise QuantizationError(
            f'bitsandbytes {quantization} self-test failed on {device}: '
            f'{type(exc).__name__}: {exc}. On Jetson, build bitsandbytes for JetPack; elsewhere '
            'check the bitsandbytes install or set quantization to "none"') from exc
    elapsed = 1e3 * (time.perf_counter() - start)
    abs_error = float((output - reference).abs().max())
    rel_error = abs_error / max(float(reference.abs().max()), 1e-12)
    quant_error = float((reference_weight.cpu() - weight).abs().max())
    weight_scale = float(weight.abs().max())
    ok = (bool(torch.isfinite(output).all()) and rel_error <= tolerance
          and quant_error <= 0.25 * weight_scale)
    message = (f'{quantization} matmul {size}x{size} on {device}: max abs error {abs_error:.2e} '
               f'(relative {rel_error:.2e}) against the dequantized reference; weight '
               f'quantization error {quant_error:.2e}')
    return SelfTestResult(quantization, str(device), ok, abs_error, rel_error, elapsed,
                          message if ok else 'FAILED: ' + message)
