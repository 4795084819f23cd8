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
Each family's real processor class around its real image processor, configured small.

The geometry (tile side, patch size, merge size, number of image tokens) is read from the model
config, so that the processor writes exactly as many image placeholder tokens as the vision tower
produces features. Without ``torchvision`` the PIL backend of each image processor is used, which
is what ``transformers`` itself falls back to.

In transformers 5.24 every processor that also handles video (LLaVA-OneVision, Qwen2-VL,
Qwen2.5-VL, Qwen3-VL, SmolVLM) can only be built with ``torchvision``, even for images: its video
processor is a required part. :func:`processor_unavailable_reason` says when that is the case;
the tokenizer and the image processor of those families still work without it.
"""

import inspect
import json
from pathlib import Path
from typing import Any

from superneuron_ros.errors import ModelLoadError
from superneuron_ros.lab.zoo.text import build_tokenizer, check_family, PROCESSOR_CLASSES
import transformers
from transformers import PretrainedConfig, ProcessorMixin
from transformers.utils import is_num2words_available, is_torchvision_available

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]
QWEN_FAMILIES = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl')
VIDEO_FAMILIES = ('llava_onevision', 'qwen2_vl', 'qwen2_5_vl', 'qwen3_vl', 'smolvlm')


def processor_unavailable_reason(family: str) -> str | None:
    """Return why the processor of `family` cannot be built here, or None when it can."""
    if check_family(family) in VIDEO_FAMILIES and not is_torchvision_available():
        return (f'the {PROCESSOR_CLASSES[family]} of transformers {transformers.__version__} '
                'needs torchvision (its video processor is required); install the torchvision '
                'build that matches your torch (CPU-only torch: the wheel from '
                'https://download.pytorch.org/whl/cpu)')
    if family == 'smolvlm' and not is_num2words_available():
        return ('the SmolVLMProcessor of transformers needs the num2words package; install it '
                'with `pip install num2words`')
    return None


def image_processor_class(name: str) -> type:
    """Return the image processor class `name`, its PIL backend when torchvision is missing."""
    return getattr(transformers, name if is_torchvision_available() else name + 'Pil')


def qwen_factor(config: PretrainedConfig) -> int:
    """Return the side in pixels of one merged Qwen image token (patch size x merge size)."""
    return config.vision_config.patch_size * config.vision_config.spatial_merge_size


def image_processor_for_config(family: str, config: PretrainedConfig,
                               image_size: int | None = None) -> Any:
    """
    Build the real image processor of `family` whose geometry matches `config`.

    LLaVA and OneVision take the tile side from the vision config and ignore `image_size`. For
    the Qwen families, whose towers take any size, `image_size` bounds the resized image to
    about `image_size` x `image_size` pixels (default: 4 x 4 merged tokens). SmolVLM resizes
    the longest side to `image_size` (default: two tiles) and cuts tiles of the tower side.
    """
    vision = config.vision_config
    if check_family(family) == 'llava':  # resize the short side, centre crop, CLIP statistics
        side = vision.image_size
        return image_processor_class('CLIPImageProcessor')(
            size={'shortest_edge': side}, crop_size={'height': side, 'width': side},
            image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    if family == 'llava_onevision':  # any-resolution tiles of the tower side
        side = vision.image_size
        return image_processor_class('LlavaOnevisionImageProcessor')(
            size={'height': side, 'width': side}, image_grid_pinpoints=config.image_grid_pinpoints,
            image_mean=HALF, image_std=HALF)
    if family in QWEN_FAMILIES:  # dynamic resolution, multiples of patch x merge
        factor = qwen_factor(config)
        side = image_size or 4 * factor
        stats = HALF if family == 'qwen3_vl' else OPENAI_CLIP_MEAN
        return image_processor_class('Qwen2VLImageProcessor')(
            size={'shortest_edge': factor * factor, 'longest_edge': side * side},
            patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size, image_mean=stats,
            image_std=HALF if family == 'qwen3_vl' else OPENAI_CLIP_STD)
    tile = vision.image_size  # SmolVLM: tiles of the tower side plus a global view
    return image_processor_class('SmolVLMImageProcessor')(
        size={'longest_edge': image_size or 2 * tile}, max_image_size={'longest_edge': tile},
        image_mean=HALF, image_std=HALF)


def _video_processor(family: str, config: PretrainedConfig, image_processor: Any) -> Any:
    """Build the video processor that the processor of `family` requires (torchvision only)."""
    stats = {'image_mean': image_processor.image_mean, 'image_std': image_processor.image_std}
    if family == 'llava_onevision':
        return transformers.LlavaOnevisionVideoProcessor(size=dict(image_processor.size), **stats)
    if family in QWEN_FAMILIES:
        name = 'Qwen3VLVideoProcessor' if family == 'qwen3_vl' else 'Qwen2VLVideoProcessor'
        vision = config.vision_config
        return getattr(transformers, name)(
            size=dict(image_processor.size), patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size, **stats)
    return transformers.SmolVLMVideoProcessor(
        size=dict(image_processor.size), max_image_size=dict(image_processor.max_image_size),
        **stats)


def processor_kwargs(family: str, config: PretrainedConfig) -> dict[str, Any]:
    """Return the processor's own init arguments (besides its parts) that match `config`."""
    vision = config.vision_config
    if check_family(family) == 'llava':
        return {'patch_size': vision.patch_size,
                'vision_feature_select_strategy': config.vision_feature_select_strategy,
                'num_additional_image_tokens': 1}  # CLIP's class token
    if family == 'llava_onevision':
        return {'num_image_tokens': (vision.image_size // vision.patch_size) ** 2,
                'vision_feature_select_strategy': config.vision_feature_select_strategy,
                'vision_aspect_ratio': config.vision_aspect_ratio}
    if family == 'smolvlm':
        return {'image_seq_len':
                (vision.image_size // vision.patch_size) ** 2 // config.scale_factor ** 2}
    return {}


def processor_for_config(family: str, config: PretrainedConfig,
                         image_size: int | None = None) -> ProcessorMixin:
    """
    Build the processor of `family` whose image geometry matches the model `config`.

    Raises ModelLoadError when this environment cannot build it (see
    :func:`processor_unavailable_reason`).
    """
    reason = processor_unavailable_reason(family)
    if reason is not None:
        raise ModelLoadError(reason)
    parts = {'image_processor': image_processor_for_config(family, config, image_size),
             'tokenizer': build_tokenizer(family)}
    if family in VIDEO_FAMILIES:
        parts['video_processor'] = _video_processor(family, config, parts['image_processor'])
    processor_class = getattr(transformers, PROCESSOR_CLASSES[family])
    return processor_class(**parts, **processor_kwargs(family, config))


def save_processor_parts(out_dir: Path, family: str, config: PretrainedConfig,
                         image_size: int | None = None) -> None:
    """
    Save what a processor would, where the processor itself cannot be built here.

    Writes the tokenizer files, the chat template (``chat_template.jinja``) and a
    ``processor_config.json`` with the processor class, its init arguments and the image
    processor, in the layout ``ProcessorMixin.save_pretrained`` writes, less the video processor.
    """
    tokenizer = build_tokenizer(family)
    tokenizer.save_pretrained(out_dir)
    image_processor = image_processor_for_config(family, config, image_size)
    data = {'image_processor': image_processor.to_dict(), **processor_kwargs(family, config),
            'processor_class': PROCESSOR_CLASSES[family]}
    init = inspect.signature(getattr(transformers, PROCESSOR_CLASSES[family]).__init__).parameters
    for name in ('image_token', 'video_token'):  # saved when the processor takes them
        if name in init:
            data[name] = getattr(tokenizer, name)
    (Path(out_dir) / 'processor_config.json').write_text(
        json.dumps(data, indent=2, sort_keys=True) + '\n', encoding='utf-8')
