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
Configs with the real shapes of released checkpoints, plus the small trainable 'demo' LLaVA.

The shapes follow the ``config.json`` of ``llava-hf/llava-1.5-7b-hf``,
``Qwen/Qwen2-VL-2B-Instruct`` and ``HuggingFaceTB/SmolVLM-256M-Instruct``; the token ids are those
of the zoo tokenizer, so a random-weight model built from a preset runs with the zoo processor.
A preset is instantiable on the meta device to count parameters without allocating memory. Built
with random weights it needs its full size in memory: about 14 GB in float16 for llava-1.5-7b
(7.06 B parameters), 4.4 GB for qwen2-vl-2b and 0.5 GB for smolvlm-256m.
"""

from dataclasses import dataclass
from typing import Any, Callable

from superneuron_ros.errors import UnsupportedArchitectureError
from superneuron_ros.lab.zoo.configs import make_config, merge_overrides, token_ids
from transformers import PretrainedConfig


@dataclass(frozen=True)
class Preset:
    """A named model shape: its family, config arguments and nominal image side."""

    name: str
    family: str
    arguments: Callable[[dict[str, Any]], dict[str, Any]]  # tokenizer ids -> config kwargs
    image_size: int  # the processor's size: tile side, or longest resized side (Qwen, SmolVLM)
    description: str

    def config(self, **overrides: Any) -> PretrainedConfig:
        """Return the preset's config; `overrides` as in :func:`tiny_config`."""
        kwargs = self.arguments(token_ids(self.family))
        return make_config(self.family, merge_overrides(kwargs, overrides))


def _llava_1_5_7b(ids: dict[str, Any]) -> dict[str, Any]:
    """Return LLaVA-1.5-7B: CLIP ViT-L/14-336 (576 image tokens) + Vicuna-7B (Llama, 32 layers)."""
    return {'vision_config': {'model_type': 'clip_vision_model', 'hidden_size': 1024,
                              'intermediate_size': 4096, 'num_hidden_layers': 24,
                              'num_attention_heads': 16, 'patch_size': 14, 'image_size': 336,
                              'projection_dim': 768, 'hidden_act': 'quick_gelu'},
            'text_config': {'model_type': 'llama', 'hidden_size': 4096,
                            'intermediate_size': 11008, 'num_hidden_layers': 32,
                            'num_attention_heads': 32, 'num_key_value_heads': 32,
                            'vocab_size': 32064, 'max_position_embeddings': 4096,
                            'rms_norm_eps': 1e-5, 'bos_token_id': ids['bos_token_id'],
                            'eos_token_id': ids['eos_token_id'],
                            'pad_token_id': ids['pad_token_id']},
            'image_token_index': ids['image_token_id'], 'image_seq_length': 576,
            'vision_feature_layer': -2, 'vision_feature_select_strategy': 'default',
            'projector_hidden_act': 'gelu', 'pad_token_id': ids['pad_token_id']}


def _qwen2_vl_2b(ids: dict[str, Any]) -> dict[str, Any]:
    """Return Qwen2-VL-2B: 32-block ViT (1280 wide, 14 px patches) + 28-layer Qwen2 (1536)."""
    return {'vision_config': {'depth': 32, 'embed_dim': 1280, 'hidden_size': 1536,
                              'mlp_ratio': 4, 'num_heads': 16, 'patch_size': 14,
                              'spatial_merge_size': 2, 'temporal_patch_size': 2,
                              'hidden_act': 'quick_gelu'},
            'text_config': {'hidden_size': 1536, 'intermediate_size': 8960,
                            'num_hidden_layers': 28, 'num_attention_heads': 12,
                            'num_key_value_heads': 2, 'vocab_size': 151936,
                            'max_position_embeddings': 32768, 'rms_norm_eps': 1e-6,
                            'tie_word_embeddings': True,
                            'rope_parameters': {'rope_type': 'default', 'rope_theta': 1000000.0,
                                                'mrope_section': [16, 24, 24]},
                            'bos_token_id': ids['bos_token_id'],
                            'eos_token_id': ids['eos_token_id'],
                            'pad_token_id': ids['pad_token_id']},
            'tie_word_embeddings': True,
            'image_token_id': ids['image_token_id'], 'video_token_id': ids['video_token_id'],
            'vision_start_token_id': ids['vision_start_token_id'],
            'vision_end_token_id': ids['vision_end_token_id']}


def _smolvlm_256m(ids: dict[str, Any]) -> dict[str, Any]:
    """Return SmolVLM-256M: SigLIP-B/16-512 + pixel shuffle 4 (64 tokens/tile) + SmolLM2-135M."""
    return {'vision_config': {'hidden_size': 768, 'intermediate_size': 3072,
                              'num_hidden_layers': 12, 'num_attention_heads': 12,
                              'patch_size': 16, 'image_size': 512},
            'text_config': {'model_type': 'llama', 'hidden_size': 576,
                            'intermediate_size': 1536, 'num_hidden_layers': 30,
                            'num_attention_heads': 9, 'num_key_value_heads': 3,
                            'vocab_size': 49280, 'max_position_embeddings': 8192,
                            'rms_norm_eps': 1e-5,
                            'rope_parameters': {'rope_type': 'default', 'rope_theta': 100000.0},
                            'bos_token_id': ids['bos_token_id'],
                            'eos_token_id': ids['eos_token_id'],
                            'pad_token_id': ids['pad_token_id']},
            'image_token_id': ids['image_token_id'], 'scale_factor': 4,
            'pad_token_id': ids['pad_token_id']}


def _demo(ids: dict[str, Any]) -> dict[str, Any]:
    """
    Return the demo LLaVA: 96 px images, 64 image tokens, 12 decoder layers of width 192.

    Every linear size is a multiple of 64, so bitsandbytes 4-bit layers run on CPU too.
    """
    return {'vision_config': {'model_type': 'clip_vision_model', 'hidden_size': 128,
                              'intermediate_size': 256, 'num_hidden_layers': 4,
                              'num_attention_heads': 2, 'patch_size': 12, 'image_size': 96,
                              'projection_dim': 128, 'hidden_act': 'quick_gelu'},
            'text_config': {'model_type': 'llama', 'hidden_size': 192,
                            'intermediate_size': 512, 'num_hidden_layers': 12,
                            'num_attention_heads': 3, 'num_key_value_heads': 3,
                            'vocab_size': ids['vocab_size'], 'max_position_embeddings': 1024,
                            'bos_token_id': ids['bos_token_id'],
                            'eos_token_id': ids['eos_token_id'],
                            'pad_token_id': ids['pad_token_id']},
            'image_token_index': ids['image_token_id'], 'image_seq_length': 64,
            'vision_feature_layer': -2, 'vision_feature_select_strategy': 'default',
            'pad_token_id': ids['pad_token_id']}


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset('llava-1.5-7b', 'llava', _llava_1_5_7b, 336,
           'LLaVA-1.5-7B shapes: 7.06 B parameters, ~14 GB in float16'),
    Preset('qwen2-vl-2b', 'qwen2_vl', _qwen2_vl_2b, 448,
           'Qwen2-VL-2B shapes: 2.21 B parameters, ~4.4 GB in float16; images capped at about '
           '448 x 448 px (256 tokens; the released processor allows far more)'),
    Preset('smolvlm-256m', 'smolvlm', _smolvlm_256m, 2048,
           'SmolVLM-256M shapes: 0.26 B parameters, ~0.5 GB in float16; longest side resized '
           'to 2048 px, 512 px tiles of 64 tokens, as released'),
    Preset('demo', 'llava', _demo, 96,
           'small LLaVA to train for the demo: 96 px images (64 tokens), 12 layers, '
           '~10 MB in float16'),
)}


def get_preset(name: str) -> Preset:
    """Return the preset `name`, or raise naming the known presets."""
    if name not in PRESETS:
        raise UnsupportedArchitectureError(
            f'no model preset {name!r}; use one of: {", ".join(PRESETS)}')
    return PRESETS[name]
