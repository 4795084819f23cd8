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
The one place where the supported vision-language model families differ.

Everything else in the core talks to a model through :class:`Family`: where the decoder layers are,
which processor outputs feed the vision tower, how to take one image's slice of a batch's vision
inputs, how the processor takes images, the positions of a token sequence (1-D, or Qwen's
M-RoPE), and how the processor's resize is bounded (benchmarks). Nothing else branches on a
family's name.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from superneuron_ros.errors import UnsupportedArchitectureError
import torch
from torch import nn


def _first_image_per_item(inputs: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Slice the first image's entry of batch-first vision inputs (LLaVA, OneVision, SmolVLM)."""
    return {key: inputs[key][:1] for key in keys if inputs.get(key) is not None}


def _first_image_flat_patches(inputs: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Slice the first image of Qwen-style inputs, whose patches of all images are concatenated."""
    grid = inputs['image_grid_thw'][:1]  # [1, 3]
    num_patches = int(grid.prod())
    return {'pixel_values': inputs['pixel_values'][:num_patches], 'image_grid_thw': grid}


def _linear_positions(base_model: nn.Module, ids: Sequence[int],
                      inputs: dict[str, Any]) -> torch.Tensor:
    """Return the positions [1, T] of a sequence under 1-D rotary embeddings: 0..T-1."""
    return torch.arange(len(ids), dtype=torch.long)[None]


def _mrope_positions(base_model: nn.Module, ids: Sequence[int],
                     inputs: dict[str, Any]) -> torch.Tensor:
    """Return Qwen's M-RoPE positions [3, T] of one sequence holding the image of `inputs`."""
    token = base_model.config.image_token_id
    input_ids = torch.tensor([list(ids)], dtype=torch.long)  # [1, T]
    grid = inputs['image_grid_thw'][:1].cpu()  # [1, 3]
    positions, _ = base_model.get_rope_index(input_ids=input_ids,
                                             mm_token_type_ids=(input_ids == token).int(),
                                             image_grid_thw=grid)
    return positions[:, 0]  # [3, T]


def _no_bound(image_processor: Any, side: int) -> Any:
    """Return None: the tower input is fixed (LLaVA, OneVision), nothing to bound."""
    return None


def _qwen_bound(image_processor: Any, side: int) -> Any:
    """Return the pixel budget of Qwen: at most side x side (one token per 28 x 28 block)."""
    return int(side) * int(side)


def _smolvlm_bound(image_processor: Any, side: int) -> Any:
    """Return the longest edge SmolVLM resizes to: `side` in whole tiles (at least one)."""
    tile = int(image_processor.max_image_size['longest_edge'])
    return max(tile, int(round(side / tile)) * tile)


def _same_side(image_processor: Any, side: int) -> int:
    """Return `side`: the bound is the side itself (Qwen's pixel budget of side x side)."""
    return int(side)


@dataclass(frozen=True)
class Family:
    """What differs between VLM families, kept to data and a few small functions."""

    name: str
    display_name: str
    model_types: tuple[str, ...]
    text_model_attr: str  # attribute of the base model holding the language model
    vision_inputs: tuple[str, ...]  # processor outputs that feed `get_image_features`
    first_image: Callable[[dict[str, Any], tuple[str, ...]], dict[str, Any]]
    nested_images: bool = False  # the processor takes a list of images per prompt (SmolVLM)
    positions: Callable[[nn.Module, Sequence[int], dict[str, Any]], torch.Tensor] = \
        _linear_positions  # (base model, token ids, processor outputs) -> [R, T]
    longest_edge_bound: Callable[[Any, int], Any] = _no_bound  # image processor, side -> value
    bounded_side: Callable[[Any, int], int] = _same_side  # the side a bound of `side` sets

    @property
    def takes_vision_side(self) -> bool:
        """Return whether the processor's resize has a bound to set (Qwen, SmolVLM)."""
        return self.longest_edge_bound is not _no_bound

    def text_model(self, base_model: nn.Module) -> nn.Module:
        """Return the language model (embeddings, decoder layers, final norm) of a base model."""
        return getattr(base_model, self.text_model_attr)

    def decoder_layers(self, base_model: nn.Module) -> nn.ModuleList:
        """Return the list of decoder layers of a base model."""
        return self.text_model(base_model).layers

    def text_config(self, config: Any) -> Any:
        """Return the text (decoder) part of a composite model config."""
        return config.get_text_config(decoder=True)

    def image_features(self, base_model: nn.Module, inputs: dict[str, Any]) -> Any:
        """Run the vision tower and projector on the first image of `inputs`."""
        vision = self.first_image(inputs, self.vision_inputs)
        return base_model.get_image_features(**vision, return_dict=True)

    def processor_images(self, images: Sequence[Any]) -> list[Any]:
        """Return `images` (one per prompt) in the form the family's processor takes them."""
        return [[image] for image in images] if self.nested_images else list(images)

    def set_vision_side(self, image_processor: Any, side: int) -> Any:
        """
        Bound the images the processor passes to the vision tower by `side`; return the old size.

        Returns None and changes nothing for families with a fixed tower input.
        """
        value = self.longest_edge_bound(image_processor, side)
        if value is None:
            return None
        old = image_processor.size
        if dataclasses.is_dataclass(old):
            image_processor.size = dataclasses.replace(old, longest_edge=value)
        else:
            image_processor.size = {**old, 'longest_edge': value}
        return old


FAMILIES: tuple[Family, ...] = (
    Family('llava', 'LLaVA-1.5', ('llava',), 'language_model',
           ('pixel_values',), _first_image_per_item),
    Family('llava_onevision', 'LLaVA-OneVision', ('llava_onevision',), 'language_model',
           ('pixel_values', 'image_sizes'), _first_image_per_item),
    Family('qwen2_vl', 'Qwen2-VL', ('qwen2_vl',), 'language_model',
           ('pixel_values', 'image_grid_thw'), _first_image_flat_patches,
           positions=_mrope_positions, longest_edge_bound=_qwen_bound),
    Family('qwen2_5_vl', 'Qwen2.5-VL', ('qwen2_5_vl',), 'language_model',
           ('pixel_values', 'image_grid_thw'), _first_image_flat_patches,
           positions=_mrope_positions, longest_edge_bound=_qwen_bound),
    Family('qwen3_vl', 'Qwen3-VL', ('qwen3_vl',), 'language_model',
           ('pixel_values', 'image_grid_thw'), _first_image_flat_patches,
           positions=_mrope_positions, longest_edge_bound=_qwen_bound),
    Family('smolvlm', 'SmolVLM (Idefics3)', ('smolvlm', 'idefics3'), 'text_model',
           ('pixel_values', 'pixel_attention_mask'), _first_image_per_item,
           nested_images=True, longest_edge_bound=_smolvlm_bound, bounded_side=_smolvlm_bound),
)


def family_for(model_type: str) -> Family:
    """Return the family of a config's `model_type`, or raise naming the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ', '.join(f'{f.display_name} ({"/".join(f.model_types)})' for f in FAMILIES)
    raise UnsupportedArchitectureError(
        f'model_type {model_type!r} is not supported; supported families: {supported}')
