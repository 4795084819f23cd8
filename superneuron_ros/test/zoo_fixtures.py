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
Reusable pytest fixtures and helpers for tests that need a tiny model folder from the zoo.

Import the fixtures into a test module (or into ``conftest.py``) with
``from zoo_fixtures import zoo_folder  # noqa: F401``. Folders are built once per test session.
"""

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from superneuron_ros.lab.zoo import build_model_folder, processor_unavailable_reason
import torch
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

VISION_KEYS = ('pixel_values', 'image_grid_thw', 'pixel_attention_mask', 'image_sizes')


@pytest.fixture(scope='session')
def zoo_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Return ``get(family, **build_kwargs) -> Path``, building each tiny folder once a session."""
    cache: dict[tuple, Path] = {}

    def get(family: str, **kwargs: Any) -> Path:
        """Return the folder of `family` built with `kwargs`, building it on first use."""
        key = (family, tuple(sorted(kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f'zoo_{family}')
            cache[key] = build_model_folder(out, family, **kwargs)
        return cache[key]

    return get


def question_messages(question: str) -> list[dict[str, Any]]:
    """Return a one-turn chat asking `question` about one image."""
    return [{'role': 'user',
             'content': [{'type': 'image'}, {'type': 'text', 'text': question}]}]


def model_inputs(folder: Path, model: torch.nn.Module, image: np.ndarray,
                 question: str) -> dict[str, torch.Tensor]:
    """
    Return the model inputs for one image and a chat-templated `question`.

    Uses the folder's processor when this environment can build it. Otherwise (a video-capable
    processor without torchvision) it renders the chat template with the tokenizer, runs the
    image processor, and repeats the image placeholder once per image feature of the model.
    """
    family = model.config.model_type
    if processor_unavailable_reason(family) is None:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        prompt = processor.apply_chat_template(question_messages(question),
                                               add_generation_prompt=True)
        return dict(processor(images=[image], text=[prompt], return_tensors='pt'))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    vision = {key: value for key, value in image_processor(images=[image], return_tensors='pt')
              .items() if key in VISION_KEYS}
    with torch.inference_mode():
        features = model.model.get_image_features(**vision, return_dict=True).pooler_output
    num_features = sum(int(f.shape[0]) for f in features)  # per image: [tokens, hidden]
    prompt = tokenizer.apply_chat_template(question_messages(question), tokenize=False,
                                           add_generation_prompt=True)
    prompt = prompt.replace(tokenizer.image_token, tokenizer.image_token * num_features)
    inputs = {**tokenizer([prompt], return_tensors='pt'), **vision}
    if 'image_grid_thw' in vision:  # Qwen M-RoPE: 1 marks image tokens
        inputs['mm_token_type_ids'] = (inputs['input_ids'] == tokenizer.image_token_id).int()
    return inputs
