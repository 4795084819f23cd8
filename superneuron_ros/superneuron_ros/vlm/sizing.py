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
Size a model without allocating it: parameter counts of full and truncated models on meta.

This is how a 7B configuration is sized on a small machine: the modules are built on PyTorch's meta
device, which records shapes and allocates nothing.
"""

from dataclasses import dataclass
import re
from typing import Any

from superneuron_ros.vlm.config import DEFAULT_QUANTIZE_MODULES
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.loading import truncate_config
from superneuron_ros.vlm.quantization import quiet_backend_notices, VISION_MODULES
import torch

# Bytes per parameter of a weight stored in each format (4-bit: two per byte, plus one fp32 absmax
# per 64-value block; torchao int4: a bfloat16 scale and zero point per 64-value group; non-linear
# weights such as norms and embeddings stay in the compute dtype).
BYTES_PER_QUANTIZED_WEIGHT = {'nf4': 0.5 + 4 / 64, 'fp4': 0.5 + 4 / 64, 'int8': 1.0 + 4 / 4096,
                              'torchao-int4': 0.5 + 4 / 64}


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts of one model build."""

    total: int  # every parameter
    linear: int  # parameters of nn.Linear weights inside the decoder and vision tower
    decoder_layers: int
    vision_linear: int = 0  # the part of `linear` in the vision tower and projector

    def estimate_bytes(self, quantization: str, dtype_bytes: int = 2,
                       quantize_modules: str = DEFAULT_QUANTIZE_MODULES) -> float:
        """Estimate resident bytes with the chosen linear weights quantized."""
        if quantization == 'none':
            return float(self.total * dtype_bytes)
        per_weight = BYTES_PER_QUANTIZED_WEIGHT[quantization]
        quantized = self.linear - (self.vision_linear if quantize_modules == 'language' else 0)
        return quantized * per_weight + (self.total - quantized) * dtype_bytes


def _count(model: torch.nn.Module,
           skip: tuple[str, ...] = ('lm_head',)) -> tuple[int, int, int]:
    seen, total, linear, vision = set(), 0, 0, 0
    for name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            total += param.numel()
            if (isinstance(module, torch.nn.Linear) and param_name == 'weight'
                    and not any(part in name for part in skip)):
                linear += param.numel()
                if re.match(VISION_MODULES + r'\.', name):
                    vision += param.numel()
    return total, linear, vision


def model_sizes(config: Any, exit_layer: int) -> tuple[ModelSize, ModelSize]:
    """Return (full model with LM head, model truncated at `exit_layer` without LM head)."""
    quiet_backend_notices()  # transformers imports torchao when it is installed
    from transformers import AutoModel, AutoModelForImageTextToText
    family = family_for(config.model_type)
    depth = family.text_config(config).num_hidden_layers
    with torch.device('meta'):
        full = AutoModelForImageTextToText.from_config(config)
        truncated = AutoModel.from_config(truncate_config(config, family, exit_layer))
    full_total, full_linear, full_vision = _count(full)
    cut_total, cut_linear, cut_vision = _count(truncated)
    return (ModelSize(full_total, full_linear, depth, full_vision),
            ModelSize(cut_total, cut_linear, exit_layer + 1, cut_vision))
