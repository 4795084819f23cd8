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

"""Shared prefix: one preprocessing per image, K prompts packed, exact against unshared passes."""

import numpy as np
import pytest
from superneuron_ros.lab.zoo import FAMILIES
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
from superneuron_ros.vlm.prefix import block_mask, expand_like, shared_length
import torch
from zoo_fixtures import zoo_folder  # noqa: F401

QUESTIONS = ('Is there a red shape?', 'How many shapes are there in the picture?',
             'Is it blue?', 'What colour is the ball on the left?', 'Is the square left of it?')
SITES = {(0, 'residual'): None, (1, 'residual'): None, (1, 'mlp'): None}
RTOL = 1e-5  # relative to the largest magnitude of the compared vector


@pytest.fixture(scope='module')
def engines(zoo_folder):  # noqa: F811
    """Return get(family, quantization) -> an Engine truncated at layer 1, built once."""
    cache = {}

    def get(family: str, quantization: str) -> Engine:
        if (family, quantization) not in cache:
            folder = zoo_folder(family, seed=1)
            cache[(family, quantization)] = Engine(load_model(LoadConfig(
                str(folder), quantization=quantization, exit_layer=1)))
        return cache[(family, quantization)]

    return get


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _assert_close_rel(shared: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    scale = float(alone.abs().max())
    assert scale > 0, f'{what}: activations are all zero'
    err = float((shared - alone).abs().max())
    assert err <= RTOL * scale, f'{what}: max error {err:.3g} over scale {scale:.3g}'


def test_expand_like_replaces_the_placeholder_block():
    """The image block of the first prompt replaces every prompt's placeholder."""
    # LLaVA-like: one placeholder token 9 expands to four 9s.
    raw_first, expanded = [1, 5, 9, 7, 8], [1, 5, 9, 9, 9, 9, 7, 8]
    assert expand_like(raw_first, expanded, [1, 5, 9, 6, 6, 6]) == [1, 5, 9, 9, 9, 9, 6, 6, 6]
    # SmolVLM-like: the placeholder 9 becomes a framed block 3 9 9 3.
    raw_first, expanded = [1, 9, 7], [1, 3, 9, 9, 3, 7]
    assert expand_like(raw_first, expanded, [1, 9, 4, 4]) == [1, 3, 9, 9, 3, 4, 4]
    # Text that differs before the image: not expandable, the caller runs the processor.
    assert expand_like(raw_first, expanded, [2, 9, 4]) is None


def test_shared_length_leaves_each_prompt_a_token():
    """The shared prefix is the common start, but never a whole prompt."""
    assert shared_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_length([[1, 2, 3]]) == 2
    assert shared_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_length([[1, 2], [7, 2]]) == 0


def test_block_mask_lets_prompts_see_the_prefix_and_themselves_only():
    """Prefix of 2, then prompts of 2 and 1 tokens: the allowed pattern, row by row."""
    mask = block_mask(2, [2, 1], torch.float32, torch.device('cpu'))[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0],
                       [1, 1, 1, 0, 0],
                       [1, 1, 1, 1, 0],
                       [1, 1, 0, 0, 1]]
    assert float(mask.min()) == torch.finfo(torch.float32).min


@pytest.mark.parametrize('family', FAMILIES)
def test_one_preprocessing_gives_the_processors_tokens(engines, family):
    """Sequences built from one processor call equal the processor's output for each prompt."""
    engine = engines(family, 'none')
    image = _image()
    prompts = [engine.render_prompt(q) for q in QUESTIONS]
    calls = []
    image_processor = engine.processor.image_processor
    original = type(image_processor).__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    type(image_processor).__call__ = counting
    try:
        _, sequences = engine.prompt_sequences(image, prompts)
    finally:
        type(image_processor).__call__ = original
    assert len(calls) == 1
    for prompt, sequence in zip(prompts, sequences):
        assert sequence == engine.preprocess([image], [prompt])['input_ids'][0].tolist()


@pytest.mark.parametrize('family', FAMILIES)
def test_prefix_holds_every_image_token(engines, family):
    """The image comes first in every family's template: all its tokens are computed once."""
    engine = engines(family, 'none')
    image = _image()
    prompts = [engine.render_prompt(q) for q in QUESTIONS[:2]]
    _, packed = engine.pack_prompts(image, prompts)
    token = engine.loaded.config.image_token_id
    ids = packed.input_ids[0]
    image_positions = (ids == token).nonzero()[:, 0]
    assert len(image_positions) > 0
    assert int(image_positions.max()) < packed.prefix_length
    single = engine.preprocess([image], prompts[:1])['input_ids'][0]
    assert int((single == token).sum()) == len(image_positions)  # the image block once, in full


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('quantization', ['none', 'nf4'])
@pytest.mark.parametrize('count', [1, 2, 5])
@pytest.mark.parametrize('padding_side', ['left', 'right'])
def test_shared_prefix_equals_unshared_passes(engines, family, quantization, count,
                                              padding_side):
    """Each prompt's activations in the packed pass equal those of its own unshared pass."""
    engine = engines(family, quantization)
    tokenizer = engine.processor.tokenizer
    saved = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        image = _image(count)
        prompts = [engine.render_prompt(q) for q in QUESTIONS[:count]]
        shared = engine.capture_shared(image, prompts, SITES)
        assert shared.layers_run == 2
        if count > 1:
            assert shared.prefix_length > 0
            _, sequences = engine.prompt_sequences(image, prompts)
            assert shared.length < sum(len(s) for s in sequences)
        for k, prompt in enumerate(prompts):
            alone = engine.capture([image], [prompt], SITES)
            for site in SITES:
                assert shared.values[site].shape[0] == count
                _assert_close_rel(shared.values[site][k], alone[site][0],
                                  f'{family} {quantization} K={count} prompt {k} {site}')
    finally:
        tokenizer.padding_side = saved
