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
Tiny configs of every family, wired to the zoo tokenizer.

Every linear layer of a tiny model has sizes that are multiples of 64 (hidden 64, intermediate 128,
two heads of 32), so that bitsandbytes 4-bit layers run on it on CPU. The image token ids, the
bos / eos / pad ids and the vocabulary size come from :func:`build_tokenizer` of the same family.
"""

import copy
from typing import Any

from superneuron_ros.lab.zoo.text import build_tokenizer, check_family
from transformers import (LlavaConfig, LlavaOnevisionConfig, PretrainedConfig, Qwen2_5_VLConfig,
                          Qwen2VLConfig, Qwen3VLConfig, SmolVLMConfig)

TINY_HIDDEN = 64
TINY_INTERMEDIATE = 128
TINY_HEADS = 2
TINY_VISION_LAYERS = 2
TINY_PATCH = 8


def round_up(value: int, multiple: int = 64) -> int:
    """Return the smallest multiple of `multiple` that is at least `value`."""
    return -(-value // multiple) * multiple


def token_ids(family: str) -> dict[str, Any]:
    """Return the ids a config needs from the family's tokenizer, and the padded vocab size."""
    tokenizer = build_tokenizer(family)
    ids = {
        'vocab_size': round_up(len(tokenizer)),
        'bos_token_id': tokenizer.bos_token_id,
        'eos_token_id': tokenizer.eos_token_id,
        'pad_token_id': tokenizer.pad_token_id,
        'image_token_id': tokenizer.image_token_id,
    }
    for name in ('video_token', 'vision_start_token', 'vision_end_token'):
        if getattr(tokenizer, name, None) is not None:
            ids[f'{name}_id'] = tokenizer.convert_tokens_to_ids(getattr(tokenizer, name))
    return ids


def _text(ids: dict[str, Any], num_layers: int, **extra: Any) -> dict[str, Any]:
    """Return the keyword arguments of a tiny decoder config."""
    return {'hidden_size': TINY_HIDDEN, 'intermediate_size': TINY_INTERMEDIATE,
            'num_hidden_layers': num_layers, 'num_attention_heads': TINY_HEADS,
            'num_key_value_heads': TINY_HEADS, 'vocab_size': ids['vocab_size'],
            'max_position_embeddings': 4096, 'bos_token_id': ids['bos_token_id'],
            'eos_token_id': ids['eos_token_id'], 'pad_token_id': ids['pad_token_id'], **extra}


def _vit(image_size: int, **extra: Any) -> dict[str, Any]:
    """Return the keyword arguments of a tiny ViT (CLIP / SigLIP / Idefics3) vision config."""
    return {'hidden_size': TINY_HIDDEN, 'intermediate_size': TINY_INTERMEDIATE,
            'num_hidden_layers': TINY_VISION_LAYERS, 'num_attention_heads': TINY_HEADS,
            'patch_size': TINY_PATCH, 'image_size': image_size, **extra}


def _llava(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny LLaVA-1.5 config arguments: CLIP ViT + Llama."""
    patches = (image_size // TINY_PATCH) ** 2
    return {'vision_config': {'model_type': 'clip_vision_model',
                              **_vit(image_size, hidden_act='quick_gelu',
                                     projection_dim=TINY_HIDDEN)},
            'text_config': {'model_type': 'llama', **_text(ids, num_layers)},
            'image_token_index': ids['image_token_id'], 'image_seq_length': patches,
            'vision_feature_layer': -2, 'vision_feature_select_strategy': 'default',
            'pad_token_id': ids['pad_token_id']}


def _onevision(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny LLaVA-OneVision config arguments: SigLIP ViT + Qwen2, any-resolution."""
    s = image_size
    return {'vision_config': {'model_type': 'siglip_vision_model',
                              **_vit(image_size, vision_use_head=False)},
            'text_config': {'model_type': 'qwen2', **_text(ids, num_layers)},
            'image_token_index': ids['image_token_id'],
            'video_token_index': ids['video_token_id'],
            'image_grid_pinpoints': [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]],
            'vision_feature_layer': -1, 'vision_feature_select_strategy': 'full',
            'vision_aspect_ratio': 'anyres_max_9'}


def _qwen_ids(ids: dict[str, Any]) -> dict[str, Any]:
    """Return the special token ids of a Qwen-VL config."""
    return {'image_token_id': ids['image_token_id'], 'video_token_id': ids['video_token_id'],
            'vision_start_token_id': ids['vision_start_token_id'],
            'vision_end_token_id': ids['vision_end_token_id']}


def _qwen2(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny Qwen2-VL config arguments (image_size only sizes the processor)."""
    rope = {'rope_type': 'default', 'rope_theta': 1000000.0, 'mrope_section': [4, 6, 6]}
    return {'vision_config': {'depth': TINY_VISION_LAYERS, 'embed_dim': TINY_HIDDEN,
                              'hidden_size': TINY_HIDDEN, 'mlp_ratio': 2, 'num_heads': TINY_HEADS,
                              'patch_size': TINY_PATCH, 'spatial_merge_size': 2,
                              'temporal_patch_size': 2},
            'text_config': _text(ids, num_layers, rope_parameters=rope), **_qwen_ids(ids)}


def _qwen2_5(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny Qwen2.5-VL config arguments: windowed attention in all but one block."""
    rope = {'rope_type': 'default', 'rope_theta': 1000000.0, 'mrope_section': [4, 6, 6]}
    return {'vision_config': {'depth': TINY_VISION_LAYERS, 'hidden_size': TINY_HIDDEN,
                              'intermediate_size': TINY_INTERMEDIATE, 'num_heads': TINY_HEADS,
                              'out_hidden_size': TINY_HIDDEN, 'patch_size': TINY_PATCH,
                              'spatial_merge_size': 2, 'temporal_patch_size': 2,
                              'window_size': 2 * 2 * TINY_PATCH,
                              'fullatt_block_indexes': [TINY_VISION_LAYERS - 1]},
            'text_config': _text(ids, num_layers, rope_parameters=rope), **_qwen_ids(ids)}


def _qwen3(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny Qwen3-VL config arguments: interleaved M-RoPE and one deepstack layer."""
    rope = {'rope_type': 'default', 'rope_theta': 5000000.0, 'mrope_section': [6, 5, 5],
            'mrope_interleaved': True}
    return {'vision_config': {'depth': TINY_VISION_LAYERS, 'hidden_size': TINY_HIDDEN,
                              'intermediate_size': TINY_INTERMEDIATE, 'num_heads': TINY_HEADS,
                              'out_hidden_size': TINY_HIDDEN, 'patch_size': TINY_PATCH,
                              'spatial_merge_size': 2, 'temporal_patch_size': 2,
                              'num_position_embeddings': 64, 'deepstack_visual_indexes': [0]},
            'text_config': _text(ids, num_layers, head_dim=TINY_HIDDEN // TINY_HEADS,
                                 rope_parameters=rope),
            **_qwen_ids(ids)}


def _smolvlm(ids: dict[str, Any], num_layers: int, image_size: int) -> dict[str, Any]:
    """Return the tiny SmolVLM config arguments: Idefics3 ViT, pixel shuffle 2, Llama."""
    return {'vision_config': _vit(image_size),
            'text_config': {'model_type': 'llama', **_text(ids, num_layers)},
            'image_token_id': ids['image_token_id'], 'scale_factor': 2,
            'pad_token_id': ids['pad_token_id']}


CONFIG_CLASSES: dict[str, type] = {
    'llava': LlavaConfig, 'llava_onevision': LlavaOnevisionConfig, 'qwen2_vl': Qwen2VLConfig,
    'qwen2_5_vl': Qwen2_5_VLConfig, 'qwen3_vl': Qwen3VLConfig, 'smolvlm': SmolVLMConfig}
_TINY = {'llava': _llava, 'llava_onevision': _onevision, 'qwen2_vl': _qwen2,
         'qwen2_5_vl': _qwen2_5, 'qwen3_vl': _qwen3, 'smolvlm': _smolvlm}
TINY_IMAGE_SIZE = 32  # the side of one vision tile of a tiny model


def merge_overrides(kwargs: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return `kwargs` updated by `overrides`; ``text_config`` / ``vision_config`` dicts merge."""
    merged = copy.deepcopy(kwargs)
    for key, value in overrides.items():
        if key in ('text_config', 'vision_config') and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def make_config(family: str, kwargs: dict[str, Any]) -> PretrainedConfig:
    """Instantiate the family's config class from keyword arguments (sub-configs as dicts)."""
    return CONFIG_CLASSES[check_family(family)](**kwargs)


def tiny_config(family: str, num_layers: int = 4, image_size: int = TINY_IMAGE_SIZE,
                **overrides: Any) -> PretrainedConfig:
    """
    Return a tiny config of `family` with `num_layers` decoder layers.

    `image_size` is the side of one vision tile, a multiple of 8 (the Qwen towers take any
    image size: there it is unused, see :func:`image_processor_for_config`). `overrides`
    replace top-level config fields; ``text_config={...}`` and ``vision_config={...}`` update
    fields of the sub-configs, for example ``tiny_config('llava', text_config={'hidden_size':
    128})``.
    """
    kwargs = _TINY[check_family(family)](token_ids(family), num_layers, image_size)
    return make_config(family, merge_overrides(kwargs, overrides))
