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
Start-up self-test of the quantization backend: a real quantized matmul against a float reference.

A backend can import fine and still fail at its first kernel (bitsandbytes' "named symbol not
found" on the PyPI aarch64 wheel under JetPack 6), or run and compute garbage. The test quantizes
a random layer with the backend the model was loaded with, multiplies, and compares the product
with the product of the ORIGINAL float weights, computed in float64. The bound is a few times the
error that quantization itself makes (nf4/fp4/int4 about 0.1 relative, int8 about 0.01), and far
below what a broken kernel gives (a wrong layout, scale or a zero output is off by about 1).
"""

from dataclasses import dataclass
import time
from typing import Callable

from superneuron_ros.errors import QuantizationError
from superneuron_ros.vlm.config import TORCHAO
from superneuron_ros.vlm.quantization import import_bitsandbytes, torchao_weight_config
import torch

# Relative error bound ||y - y_ref|| / ||y_ref|| per backend (see the module docstring).
BOUNDS = {'nf4': 0.25, 'fp4': 0.35, 'torchao-int4': 0.25, 'int8': 0.06}


@dataclass(frozen=True)
class SelfTestResult:
    """The outcome of the quantized-matmul self-test."""

    quantization: str
    device: str
    ok: bool
    max_abs_error: float
    max_rel_error: float  # relative (Frobenius) error against the float reference
    elapsed_ms: float
    message: str
    bound: float = 0.0


def _bnb_layer(quantization: str, weight: torch.Tensor, device: torch.device,
               compute_dtype: torch.dtype) -> tuple[torch.nn.Module, torch.dtype]:
    bnb = import_bitsandbytes()
    size_out, size_in = weight.shape
    if quantization == 'int8':
        layer = bnb.nn.Linear8bitLt(size_in, size_out, bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(weight.clone(), requires_grad=False,
                                         has_fp16_weights=False)
        return layer.to(device), torch.float16 if device.type == 'cuda' else compute_dtype
    layer = bnb.nn.Linear4bit(size_in, size_out, bias=False, compute_dtype=compute_dtype,
                              quant_type=quantization)
    layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type=quantization)
    return layer.to(device), compute_dtype


def _torchao_layer(weight: torch.Tensor, device: torch.device,
                   compute_dtype: torch.dtype) -> tuple[torch.nn.Module, torch.dtype]:
    config = torchao_weight_config(device)  # imports torchao
    from torchao.quantization import quantize_
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    layer = layer.to(device, torch.bfloat16)
    quantize_(layer, config)
    return layer, torch.bfloat16


def quantized_layer(quantization: str, weight: torch.Tensor, device: torch.device,
                    compute_dtype: torch.dtype) -> tuple[torch.nn.Module, torch.dtype]:
    """Return `weight` [out, in] as a quantized linear layer on `device` and its input dtype."""
    if quantization in TORCHAO:
        return _torchao_layer(weight, device, compute_dtype)
    return _bnb_layer(quantization, weight, device, compute_dtype)


def run_selftest(quantization: str, device: torch.device,
                 compute_dtype: torch.dtype = torch.float32, size: int = 256,
                 bound: float | None = None,
                 build: Callable[..., tuple[torch.nn.Module, torch.dtype]] = quantized_layer
                 ) -> SelfTestResult:
    """
    Quantize a random [size, size] layer, multiply, and compare with the float product.

    Returns a result with ok=False (never raises) when the kernel runs but its product is off by
    more than `bound` (default: :data:`BOUNDS`); raises QuantizationError when the backend cannot
    run at all.
    """
    if quantization == 'none':
        return SelfTestResult('none', str(device), True, 0.0, 0.0, 0.0,
                              'not quantized: no self-test needed')
    bound = BOUNDS[quantization] if bound is None else bound
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(size, size, generator=generator) / size ** 0.5  # [out, in]
    inputs = torch.randn(8, size, generator=generator)  # [B, in]
    start = time.perf_counter()
    try:
        layer, input_dtype = build(quantization, weight, device, compute_dtype)
        x = inputs.to(device, input_dtype)
        with torch.inference_mode():
            output = layer(x).double().cpu()  # [B, out]
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    except QuantizationError:
        raise
    except Exception as exc:  # noqa: B902 - any kernel failure is the finding
        raise QuantizationError(
            f'{quantization} self-test failed on {device}: {type(exc).__name__}: {exc}. On '
            'Jetson, build bitsandbytes for JetPack or use quantization "torchao-int4"; '
            'elsewhere check the install, or set quantization to "none"') from exc
    elapsed = 1e3 * (time.perf_counter() - start)
    # The reference: the inputs the kernel saw, times the original weights, in float64.
    reference = x.double().cpu() @ weight.double().t()  # [B, out]
    abs_error = float((output - reference).abs().max())
    rel_error = float(torch.linalg.norm(output - reference) / torch.linalg.norm(reference))
    ok = bool(torch.isfinite(output).all()) and rel_error <= bound
    message = (f'{quantization} matmul {size}x{size} on {device}: relative error '
               f'{rel_error:.3f} against the float weights (bound {bound:.2f}), max abs error '
               f'{abs_error:.2e}')
    return SelfTestResult(quantization, str(device), ok, abs_error, rel_error, elapsed,
                          message if ok else 'FAILED: ' + message, bound)
