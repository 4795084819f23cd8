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

"""Tests of the model zoo: tokenizers, processors, tiny models of every family, presets."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from superneuron_ros.errors import ModelLoadError, UnsupportedArchitectureError
from superneuron_ros.lab.zoo import (build_model_folder, build_processor, build_tokenizer,
                                     count_parameters, FAMILIES, get_preset, on_meta, PRESETS,
                                     processor_unavailable_reason, random_model, tiny_config)
from superneuron_ros.lab.zoo.processors import save_processor_parts
from superneuron_ros.lab.zoo.text import PROCESSOR_CLASSES
import torch
from transformers import (AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor,
                          AutoTokenizer, BitsAndBytesConfig)
from zoo_fixtures import model_inputs, question_messages, zoo_folder  # noqa: F401

QUESTION = 'What colour is the ball on the left?'


@pytest.fixture(scope='module')
def image() -> np.ndarray:
    """Return one RGB camera-like image, not square, of uint8."""
    return np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # [H, W, 3]


@pytest.mark.parametrize('family', FAMILIES)
def test_tokenizer_round_trip(family: str) -> None:
    """Words decode back with their spaces; answers and image tokens are single tokens."""
    tokenizer = build_tokenizer(family)
    text = 'Is there a red circle left of 3 blue squares? Yes, there is.'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    spelled = tokenizer.encode('Zebra xylophones', add_special_tokens=False)
    assert tokenizer.unk_token_id not in spelled
    for word in ('yes', 'no', 'red', 'purple', 'triangle', 'two', '7', 'left'):
        ids = tokenizer.encode(word, add_special_tokens=False)
        assert len(ids) == 1 and tokenizer.decode(ids) == word
    image_ids = tokenizer.encode(tokenizer.image_token, add_special_tokens=False)
    assert image_ids == [tokenizer.image_token_id]
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None


@pytest.mark.parametrize('family', FAMILIES)
def test_chat_template_ends_at_answer(family: str) -> None:
    """The rendered prompt holds the image and question and ends with the assistant's turn."""
    tokenizer = build_tokenizer(family)
    prompt = tokenizer.apply_chat_template(question_messages(QUESTION), tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.count(tokenizer.image_token) == 1 and QUESTION in prompt
    ending = {'llava': 'ASSISTANT:', 'smolvlm': 'Assistant:'}.get(
        family, '<|im_start|>assistant\n')
    assert prompt.endswith(ending)
    without = tokenizer.apply_chat_template(question_messages(QUESTION), tokenize=False,
                                            add_generation_prompt=False)
    assert not without.endswith(ending)


def test_tokenizer_is_deterministic() -> None:
    """Two builds give the same vocabulary, so folders built twice are interchangeable."""
    assert build_tokenizer('qwen2_vl').get_vocab() == build_tokenizer('qwen2_vl').get_vocab()


@pytest.mark.parametrize('family', FAMILIES)
def test_tiny_config_shapes(family: str) -> None:
    """Tiny linear layers are multiples of 64; ids fit the vocabulary; layers as asked."""
    config = tiny_config(family, num_layers=3)
    tokenizer = build_tokenizer(family)
    text = config.get_text_config(decoder=True)
    assert text.num_hidden_layers == 3
    assert text.vocab_size >= len(tokenizer) and text.vocab_size % 64 == 0
    assert config.image_token_id == tokenizer.image_token_id
    linears = [m for m in on_meta(config).modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.in_features % 64 == 0 and m.out_features % 64 == 0
                           for m in linears)


def test_tiny_config_overrides() -> None:
    """Sub-config overrides merge into the tiny defaults."""
    config = tiny_config('llava', num_layers=2, text_config={'hidden_size': 128},
                         vision_feature_layer=-1)
    assert config.text_config.hidden_size == 128
    assert config.text_config.num_hidden_layers == 2
    assert config.text_config.intermediate_size == 128
    assert config.vision_feature_layer == -1


@pytest.mark.parametrize('family', FAMILIES)
def test_folder_loads_and_generates(family: str, zoo_folder,  # noqa: F811
                                    image: np.ndarray) -> None:
    """A built folder loads offline, answers one forward pass and generates 3 tokens."""
    folder = zoo_folder(family)
    manifest = json.loads((folder / 'zoo.json').read_text())
    assert manifest['family'] == family
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    assert model.config.model_type == family
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tokenizer.get_vocab() == build_tokenizer(family).get_vocab()
    inputs = model_inputs(folder, model, image, QUESTION)
    ids = inputs['input_ids']  # [1, T]
    assert int((ids == tokenizer.image_token_id).sum()) >= 1
    with torch.inference_mode():
        logits = model(**inputs).logits  # [1, T, V]
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()
    generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    new = generated[0, ids.shape[1]:]
    assert new.shape == (3,)
    text = tokenizer.decode(new, skip_special_tokens=True)
    assert isinstance(text, str) and text.strip()


@pytest.mark.parametrize('family', FAMILIES)
def test_processor_loads_back(family: str, zoo_folder,  # noqa: F811
                              image: np.ndarray) -> None:
    """Reload the saved processor; it writes one placeholder per image feature."""
    reason = processor_unavailable_reason(family)
    if reason is not None:
        pytest.skip(reason)
    folder = zoo_folder(family)
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    prompt = processor.apply_chat_template(question_messages(QUESTION), add_generation_prompt=True)
    inputs = processor(images=[image], text=[prompt], return_tensors='pt')
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    vision = {k: v for k, v in inputs.items()
              if k in ('pixel_values', 'image_grid_thw', 'pixel_attention_mask', 'image_sizes')}
    with torch.inference_mode():
        features = model.model.get_image_features(**vision, return_dict=True).pooler_output
    ids = inputs['input_ids']  # [1, T]
    assert int((ids == processor.tokenizer.image_token_id).sum()) == sum(
        int(f.shape[0]) for f in features)
    last = processor.tokenizer.convert_ids_to_tokens(ids[0, -1:].tolist())[0]
    assert last == {'llava': ':', 'smolvlm': ':'}.get(family, 'assistant')


@pytest.mark.parametrize('family', FAMILIES)
def test_folder_without_processor(family: str, zoo_folder) -> None:  # noqa: F811
    """Without a processor, the folder still holds the tokenizer and the image processor."""
    reason = processor_unavailable_reason(family)
    if reason is None:
        pytest.skip(f'the {family} processor can be built here')
    folder = zoo_folder(family)
    manifest = json.loads((folder / 'zoo.json').read_text())
    assert manifest['processor'] is False and manifest['processor_missing_reason'] == reason
    saved = json.loads((folder / 'processor_config.json').read_text())
    assert saved['processor_class'] == PROCESSOR_CLASSES[family]
    assert saved['image_processor']['image_processor_type'].endswith('ImageProcessor')
    expected = {'smolvlm': ('image_seq_len', 4), 'llava_onevision': ('num_image_tokens', 16)}
    if family in expected:  # the tiny tower: 32 px tiles of 8 px patches
        assert saved[expected[family][0]] == expected[family][1]
    assert AutoImageProcessor.from_pretrained(folder, local_files_only=True) is not None
    assert AutoTokenizer.from_pretrained(folder, local_files_only=True).chat_template
    with pytest.raises(ModelLoadError, match='install'):
        build_processor(family)


def test_processor_parts_match_save_pretrained(tmp_path) -> None:
    """Parts written without a processor match save_pretrained's files (LLaVA as witness)."""
    config = tiny_config('llava')
    build_processor('llava', config=config).save_pretrained(tmp_path / 'real')
    save_processor_parts(tmp_path / 'parts', 'llava', config)
    names = sorted(p.name for p in (tmp_path / 'real').iterdir())
    assert names == sorted(p.name for p in (tmp_path / 'parts').iterdir())
    for name in names:
        real = (tmp_path / 'real' / name).read_text()
        parts = (tmp_path / 'parts' / name).read_text()
        if name.endswith('.json'):
            real, parts = json.loads(real), json.loads(parts)
        assert real == parts, name


def test_build_is_seeded(tmp_path) -> None:
    """The same seed gives the same weights, another seed others; the global RNG is untouched."""
    state = torch.get_rng_state()
    folders = [build_model_folder(tmp_path / name, 'llava', num_layers=1, seed=seed)
               for name, seed in (('a', 0), ('b', 0), ('c', 1))]
    assert torch.equal(state, torch.get_rng_state())
    key = 'language_model.model.layers.0.mlp.down_proj.weight'
    weights = []
    for folder in folders:
        with safe_open(folder / 'model.safetensors', 'pt') as f:
            weights.append(f.get_tensor(key))
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_random_init_has_sane_scale() -> None:
    """Default init: linear weights with std about initializer_range, finite, not constant."""
    model = random_model(tiny_config('llava', num_layers=1), seed=0)
    weight = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert torch.isfinite(weight).all()
    assert 0.01 < float(weight.detach().std()) < 0.04


def test_float16_build(tmp_path) -> None:
    """A float16 build saves float16 weights that load back."""
    folder = build_model_folder(tmp_path / 'half', 'llava', num_layers=1, dtype=torch.float16)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True,
                                                        dtype='auto')
    assert next(model.parameters()).dtype == torch.float16


def test_four_bit_load_on_cpu(zoo_folder) -> None:  # noqa: F811
    """The tiny layer sizes let bitsandbytes quantize the decoder to 4 bits on CPU."""
    import bitsandbytes
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                                      bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForImageTextToText.from_pretrained(
        zoo_folder('llava'), quantization_config=quantization, device_map='cpu',
        local_files_only=True)
    down = model.model.language_model.layers[0].mlp.down_proj
    assert isinstance(down, bitsandbytes.nn.Linear4bit)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[1, 20, 30, 40]])).logits  # [1, 4, V]
    assert torch.isfinite(logits).all()


def test_preset_parameter_counts() -> None:
    """Presets have the released models' sizes, counted on the meta device."""
    assert count_parameters(get_preset('llava-1.5-7b').config()) == 7_063_427_072
    assert count_parameters(get_preset('qwen2-vl-2b').config()) == 2_208_985_600
    assert 250e6 < count_parameters(get_preset('smolvlm-256m').config()) < 262e6
    demo = get_preset('demo').config()
    assert 2 * count_parameters(demo) <= 40e6  # at most 40 MB in float16 (issue 17)
    assert demo.text_config.num_hidden_layers >= 12
    model = on_meta(demo)
    assert all(p.device.type == 'meta' for p in model.parameters())
    assert set(PRESETS) == {'llava-1.5-7b', 'qwen2-vl-2b', 'smolvlm-256m', 'demo'}


def test_preset_shapes() -> None:
    """The LLaVA-1.5-7B preset has 576 image tokens and 32 decoder layers of width 4096."""
    config = get_preset('llava-1.5-7b').config()
    vision = config.vision_config
    assert (vision.image_size // vision.patch_size) ** 2 == config.image_seq_length == 576
    assert config.text_config.num_hidden_layers == 32
    assert config.text_config.hidden_size == 4096
    assert config.text_config.intermediate_size == 11008
    assert config.image_token_id == build_tokenizer('llava').image_token_id


def test_unknown_names_raise(tmp_path) -> None:
    """Unknown families and presets, and a preset of another family, raise and say what to do."""
    with pytest.raises(UnsupportedArchitectureError, match='use one of'):
        tiny_config('gpt2')
    with pytest.raises(UnsupportedArchitectureError, match='use one of'):
        get_preset('llava-13b')
    with pytest.raises(UnsupportedArchitectureError, match="family='llava'"):
        build_model_folder(tmp_path, 'qwen2_vl', preset='demo')
