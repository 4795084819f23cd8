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
The quantization backends: bitsandbytes (nf4, fp4, int8) and torchao int4 weight-only.

Both go through transformers' own quantization configs, so that weights are quantized while the
checkpoint is read. torchao is the backend for machines where bitsandbytes fails at its first
kernel (the PyPI aarch64 wheel on JetPack 6, bitsandbytes issue #1930): on CUDA it uses the
tinygemm int4 kernel (``tile_packed_to_4d``, Ampere and newer, which includes Jetson Orin), on CPU
the prototype ``Int4OpaqueTensor`` (torch's own ``_weight_int4pack_mm_for_cpu``). Both want
bfloat16 activations.
"""

import logging
from typing import Any

from superneuron_ros.errors import QuantizationError
from superneuron_ros.vlm.config import BITSANDBYTES, QUANTIZED_MODULES, TORCHAO
import torch

LOG = logging.getLogger(__name__)

# Module names (regular expressions matched from the start of a module's full name, as
# transformers' `modules_to_not_convert` does) of every family's vision tower and projector:
# LLaVA and OneVision (vision_tower, multi_modal_projector), Qwen2/2.5/3-VL (visual, merger
# included), SmolVLM (vision_model, connector), in the base model and in the full model (model.).
VISION_MODULES = (r'(?:model\.)?'
                  r'(?:vision_tower|multi_modal_projector|visual|vision_model|connector)')
LM_HEAD = 'lm_head'
TORCHAO_VERSION = '0.18.0'  # the CPU int4 path is a prototype API of this release
TORCHAO_GROUP_SIZE = 64  # int4 scales per 64 input values; every supported width divides by 64


def skip_modules(quantize_modules: str) -> list[str]:
    """Return the module patterns left in the compute dtype for a `quantize_modules` setting."""
    if quantize_modules not in QUANTIZED_MODULES:
        raise ValueError(f'quantize_modules must be one of {QUANTIZED_MODULES}, got '
                         f'{quantize_modules!r}')
    return [LM_HEAD] if quantize_modules == 'all' else [LM_HEAD, VISION_MODULES]


def compute_dtype_for(quantization: str, dtype: torch.dtype) -> torch.dtype:
    """Refuse a compute dtype the backend cannot use (torchao int4 needs bfloat16)."""
    if quantization in TORCHAO and dtype != torch.bfloat16:
        raise QuantizationError(f'quantization {quantization!r} computes in bfloat16 only, not '
                                f'{str(dtype).replace("torch.", "")}; set dtype to "bfloat16" '
                                'or "auto"')
    return dtype


class _Notice(logging.Filter):
    """Replace a library's start-up warnings that need no action by one INFO line of ours."""

    def __init__(self, needles: tuple[str, ...], explanation: str) -> None:
        super().__init__()
        self.needles, self.explanation, self.said = needles, explanation, False

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's API
        if not any(needle in record.getMessage() for needle in self.needles):
            return True
        if not self.said:
            LOG.info(self.explanation)
            self.said = True
        return False


_BNB_NOTICE = _Notice(
    ('gemm_4bit_forward from kernels-community',),
    'bitsandbytes: the optional CPU 4-bit kernel from the Hugging Face Hub (package `kernels`) '
    'is not installed; bitsandbytes uses its built-in CPU kernel. Nothing to do.')
_TORCHAO_NOTICE = _Notice(
    ('Failed to load', 'Skipping import of cpp extensions', 'Detected no triton',
     'is an Enum subclass and is now natively supported'),
    'torchao: some optional extensions (C++/CUDA libraries, triton) did not load for this torch '
    'build; int4 weight-only uses the int4 kernels of torch itself and does not need them. '
    'Nothing to do.')
_TORCHAO_LOGGERS = ('torchao', 'torchao.kernel.intmm', 'torch.utils._pytree')


def quiet_backend_notices() -> None:
    """
    Replace the import-time warnings of bitsandbytes and torchao that need no action by INFO.

    transformers imports torchao whenever it is installed, so this runs before any model load,
    whatever the quantization (idempotent: a filter is added once).
    """
    logging.getLogger('bitsandbytes.backends.cpu.ops').addFilter(_BNB_NOTICE)
    for name in _TORCHAO_LOGGERS:  # a logger's filters do not see its children's records
        logging.getLogger(name).addFilter(_TORCHAO_NOTICE)


def import_bitsandbytes() -> Any:
    """Import bitsandbytes, or raise QuantizationError saying how to install it."""
    quiet_backend_notices()
    try:
        import bitsandbytes
    except ImportError as exc:
        raise QuantizationError(
            f'bitsandbytes failed to import ({exc}); install it (`pip install bitsandbytes`; on '
            'Jetson build it for JetPack), use quantization "torchao-int4", or set quantization '
            'to "none"') from exc
    return bitsandbytes


def import_torchao() -> Any:
    """Import torchao (its import-time notices replaced), or raise QuantizationError."""
    quiet_backend_notices()
    try:
        import torchao
    except ImportError as exc:
        raise QuantizationError(
            f'quantization "torchao-int4" needs torchao, which failed to import ({exc}); '
            f'`pip install --no-deps torchao=={TORCHAO_VERSION}` (it uses the int4 kernels of '
            'torch itself; never let pip replace torch), or use a bitsandbytes format or '
            '"none"') from exc
    return torchao


def torchao_weight_config(device: torch.device) -> Any:
    """Return torchao's int4 weight-only config for `device` (tinygemm on CUDA, opaque on CPU)."""
    import_torchao()
    try:
        if device.type == 'cuda':
            from torchao.quantization import Int4WeightOnlyConfig
            return Int4WeightOnlyConfig(group_size=TORCHAO_GROUP_SIZE,
                                        int4_packing_format='tile_packed_to_4d')
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
        return PrototypeInt4WeightOnlyConfig(group_size=TORCHAO_GROUP_SIZE)
    except ImportError as exc:
        raise QuantizationError(
            f'quantization "torchao-int4" needs torchao {TORCHAO_VERSION} with its int4 '
            f'weight-only configs ({exc}); '
            f'`pip install --no-deps torchao=={TORCHAO_VERSION}`') from exc


def quantization_config(quantization: str, compute_dtype: torch.dtype,
                        device: torch.device = torch.device('cpu'),
                        quantize_modules: str = 'language') -> Any:
    """Return the transformers quantization config of a setting, or None for 'none'."""
    if quantization == 'none':
        return None
    skip = skip_modules(quantize_modules)
    if quantization in TORCHAO:
        from transformers import TorchAoConfig
        compute_dtype_for(quantization, compute_dtype)
        return TorchAoConfig(quant_type=torchao_weight_config(device),
                             modules_to_not_convert=skip)
    if quantization not in BITSANDBYTES:
        raise QuantizationError(f'unknown quantization {quantization!r}')
    import_bitsandbytes()
    from transformers import BitsAndBytesConfig
    if quantization == 'int8':
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization,
                              bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=False, llm_int8_skip_modules=skip)


def is_quantized(module: torch.nn.Module) -> bool:
    """Whether a module is a linear layer whose weight is stored quantized (any backend)."""
    if type(module).__name__ in ('Linear4bit', 'Linear8bitLt'):  # bitsandbytes
        return True
    weight = getattr(module, 'weight', None)
    return isinstance(module, torch.nn.Linear) and 'Int4' in type(weight).__name__  # torchao
