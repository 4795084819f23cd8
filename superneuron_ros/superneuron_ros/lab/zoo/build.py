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
Build model folders from zoo configs: seeded random weights, processor, no network.

A folder written by :func:`build_model_folder` loads back with
``AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)`` and
``AutoProcessor.from_pretrained(folder, local_files_only=True)``, like a downloaded checkpoint.
"""

import json
import logging
from pathlib import Path
from typing import Any

from superneuron_ros.errors import UnsupportedArchitectureError
from superneuron_ros.lab.zoo.configs import tiny_config, TINY_IMAGE_SIZE
from superneuron_ros.lab.zoo.presets import get_preset
from superneuron_ros.lab.zoo.processors import (processor_for_config, processor_unavailable_reason,
                                                qwen_factor, QWEN_FAMILIES, save_processor_parts)
from superneuron_ros.lab.zoo.text import build_tokenizer, check_family
import torch
from torch import nn
import transformers
from transformers import AutoModelForImageTextToText, GenerationConfig, PretrainedConfig

_LOG = logging.getLogger(__name__)
MANIFEST = 'zoo.json'  # what the zoo built into a folder: family, preset, seed, shapes


def resolve_config(family: str, preset: str | None = None, num_layers: int = 4,
                   image_size: int | None = None,
                   config_overrides: dict[str, Any] | None = None
                   ) -> tuple[PretrainedConfig, int | None]:
    """
    Return the config of a preset or of a tiny model, and the processor's image size.

    For a tiny model, `image_size` is the vision tile side (LLaVA, OneVision, SmolVLM) or the
    largest side an image is resized to (Qwen). The returned processor size is None for LLaVA
    and OneVision (the tile side says it all), the longest resized side for Qwen (default
    4 x 4 merged tokens) and SmolVLM (default 2 x 2 tiles, plus the global view).
    """
    overrides = dict(config_overrides or {})
    if preset is not None:
        spec = get_preset(preset)
        if spec.family != family:
            raise UnsupportedArchitectureError(
                f'preset {preset!r} is of family {spec.family!r}, not {family!r}; pass '
                f'family={spec.family!r}')
        return spec.config(**overrides), image_size or spec.image_size
    if check_family(family) in QWEN_FAMILIES:
        config = tiny_config(family, num_layers=num_layers, **overrides)
        return config, image_size or 4 * qwen_factor(config)
    tile = image_size or TINY_IMAGE_SIZE
    config = tiny_config(family, num_layers=num_layers, image_size=tile, **overrides)
    return config, 2 * tile if family == 'smolvlm' else None


def build_processor(family: str, image_size: int | None = None,
                    config: PretrainedConfig | None = None) -> transformers.ProcessorMixin:
    """
    Return the real processor of `family` configured for `config` (default: a tiny config).

    Without `config`, `image_size` is as in :func:`resolve_config`; with it, as in
    :func:`image_processor_for_config`.
    """
    if config is None:
        config, image_size = resolve_config(family, image_size=image_size)
    return processor_for_config(family, config, image_size)


def on_meta(config: PretrainedConfig) -> nn.Module:
    """Instantiate the model of `config` on the meta device: shapes only, no memory."""
    with torch.device('meta'):
        return AutoModelForImageTextToText.from_config(config)


def count_parameters(config: PretrainedConfig) -> int:
    """Count the parameters of the model of `config` without allocating them."""
    model = on_meta(config)
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


def random_model(config: PretrainedConfig, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> nn.Module:
    """
    Instantiate the model of `config` with its default init, seeded, in `dtype`, on CPU.

    The global RNG state is restored afterwards. Memory: the full model in `dtype` (about 14 GB
    for the llava-1.5-7b preset in float16).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.eval()


def build_model_folder(out_dir: str | Path, family: str, *, preset: str | None = None,
                       config_overrides: dict[str, Any] | None = None, seed: int = 0,
                       dtype: torch.dtype = torch.float32, num_layers: int = 4,
                       image_size: int | None = None) -> Path:
    """
    Build a model of `family` (tiny, or of a preset's shape) and save it with its processor.

    Writes safetensors weights, ``config.json``, ``generation_config.json``, the processor
    (tokenizer, image processor, chat template) and ``zoo.json`` (what was built) into `out_dir`,
    and returns the folder. `num_layers` applies to tiny models; `image_size` is as in
    :func:`resolve_config` (with a preset: the processor's size, by default the preset's);
    `config_overrides` as in :func:`tiny_config`. Where this environment cannot build the
    family's processor (see :func:`processor_unavailable_reason`), its parts are saved without
    it (see :func:`save_processor_parts`), ``zoo.json`` says why, and a warning is logged.
    """
    out = Path(out_dir)
    config, side = resolve_config(family, preset, num_layers, image_size, config_overrides)
    reason = processor_unavailable_reason(family)
    processor = processor_for_config(family, config, side) if reason is None else None
    model = random_model(config, seed=seed, dtype=dtype)
    tokenizer = build_tokenizer(family)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    if processor is not None:
        processor.save_pretrained(out)
    else:
        _LOG.warning('saving the parts of the %s processor without building it: %s', family,
                     reason)
        save_processor_parts(out, family, config, side)
    manifest = {'family': family, 'preset': preset, 'seed': seed, 'dtype': str(dtype),
                'image_size': side or config.vision_config.image_size,
                'num_parameters': sum(p.numel() for p in model.parameters()),
                'processor': reason is None, 'processor_missing_reason': reason,
                'transformers': transformers.__version__}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + '\n')
    _LOG.info('built %s model (%s parameters) in %s', preset or f'tiny {family}',
              f'{manifest["num_parameters"]:,}', out)
    return out
