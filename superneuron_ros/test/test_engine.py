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

"""Core engine: truncated loading, exact activation capture, shared pass, errors."""

import json
from pathlib import Path
import sys

import numpy as np
import pytest
from superneuron_ros.errors import (DeviceError, ImageError, LayerRangeError, ModelLoadError,
                                    QuantizationError, SuperneuronError,
                                    UnsupportedArchitectureError)
from superneuron_ros.lab.zoo import build_model_folder, FAMILIES
from superneuron_ros.vlm.engine import Engine, StageTimes
from superneuron_ros.vlm.loading import load_model, LoadConfig
from superneuron_ros.vlm.sizing import model_sizes
import torch

SITES = {(0, 'residual'): None, (1, 'residual'): None, (1, 'mlp'): None}
QUESTIONS = ('Is there a red shape?', 'How many shapes are there in the picture?')


class _ModelDirs(dict):
    """Tiny models of each family, built on first use and saved through save_pretrained."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, family: str) -> Path:
        self[family] = build_model_folder(self.root / family, family, seed=1)
        return self[family]


@pytest.fixture(scope='module')
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Build one tiny model of every family lazily."""
    return _ModelDirs(tmp_path_factory.mktemp('models'))


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(count)]


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape, key
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=str(key))


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('quantization', ['none', 'nf4'])
def test_truncated_equals_full(model_dirs, family, quantization):
    """Activations of layers 0..1 read from the truncated model equal the full model's."""
    path = str(model_dirs[family])
    full = Engine(load_model(LoadConfig(path, quantization=quantization)))
    cut = Engine(load_model(LoadConfig(path, quantization=quantization, exit_layer=1)))
    assert cut.num_loaded_layers == 2 and full.num_loaded_layers == full.loaded.num_layers
    images = _images(2)
    prompts = [cut.render_prompt(q) for q in QUESTIONS]
    from_full = full.capture(images, prompts, SITES)
    from_cut = cut.capture(images, prompts, SITES)
    _assert_same(from_full, from_cut, atol=1e-5)
    # The values are real activations, not zeros, and differ between the two questions.
    assert all(v.abs().max() > 0 for v in from_cut.values())
    assert not torch.allclose(from_cut[(1, 'residual')][0], from_cut[(1, 'residual')][1])


@pytest.mark.parametrize('family', FAMILIES)
def test_padded_batch_equals_single_samples(model_dirs, family):
    """Each sample of a padded batch reads its own last real position."""
    engine = Engine(load_model(LoadConfig(str(model_dirs[family]), quantization='none',
                                          exit_layer=1)))
    images = _images(2)
    prompts = [engine.render_prompt(q) for q in QUESTIONS]
    batch = engine.preprocess(images, prompts)
    assert (batch['attention_mask'] == 0).any(), 'the two prompts should need padding'
    together = engine.capture(images, prompts, SITES)
    for i in range(2):
        alone = engine.capture(images[i:i + 1], prompts[i:i + 1], SITES)
        _assert_same({k: v[i:i + 1] for k, v in together.items()}, alone, atol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_shared_vision_pass_matches_separate_calls(model_dirs, family):
    """Several questions about one image share one vision pass with identical answers."""
    engine = Engine(load_model(LoadConfig(str(model_dirs[family]), quantization='none',
                                          exit_layer=1)))
    image = _images(1)[0]
    prompts = [engine.render_prompt(q) for q in QUESTIONS]
    selected = {(1, 'mlp'): torch.tensor([3, 0, 7]), (0, 'residual'): None}
    result = engine.capture_shared(image, prompts, selected)
    shared, times = result.values, result.times
    assert isinstance(times, StageTimes) and times.vision_ms > 0 and times.decoder_ms > 0
    assert result.layers_run == 2
    assert shared[(1, 'mlp')].shape == (2, 3)
    for i, prompt in enumerate(prompts):
        alone = engine.capture([image], [prompt], selected)
        _assert_same({k: v[i:i + 1] for k, v in shared.items()}, alone, atol=1e-5)
    everything = engine.capture([image], prompts[:1], {(1, 'mlp'): None})[(1, 'mlp')]
    torch.testing.assert_close(shared[(1, 'mlp')][0], everything[0, [3, 0, 7]])


def _count_layer_calls(layers) -> tuple[list[int], list]:
    counts = [0] * len(layers)
    handles = [layer.register_forward_hook(
        lambda module, args, output, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, layer in enumerate(layers)]
    return counts, handles


def test_shared_pass_runs_only_as_deep_as_asked(model_dirs):
    """Depth, sites and watchers bound the layers that run; values match a deeper pass."""
    engine = Engine(load_model(LoadConfig(str(model_dirs['llava']), quantization='none',
                                          exit_layer=3)))
    image = _images(1)[0]
    prompts = [engine.render_prompt(q) for q in QUESTIONS]
    counts, handles = _count_layer_calls(engine.layers)
    seen = []

    def watcher(layer, values):
        seen.append((layer, sorted(values)))
        return layer == 1

    try:
        shallow = engine.capture_shared(image, prompts, {(0, 'residual'): None})
        assert counts == [1, 0, 0, 0] and shallow.layers_run == 1
        floor = engine.capture_shared(image, prompts, {})
        assert counts == [2, 1, 1, 1] and floor.layers_run == 4 and not floor.values
        watched = engine.capture_shared(image, prompts, {(0, 'residual'): None,
                                                         (1, 'mlp'): None},
                                        depth=3, watch={0: watcher, 1: watcher})
        assert counts == [3, 2, 1, 1] and watched.layers_run == 2
        assert seen == [(0, [(0, 'residual')]), (1, [(0, 'residual'), (1, 'mlp')])]
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(shallow.values[(0, 'residual')],
                               watched.values[(0, 'residual')], atol=1e-6, rtol=0)
    with pytest.raises(LayerRangeError):
        engine.capture_shared(image, prompts, {}, watch={4: watcher})
    with pytest.raises(LayerRangeError):
        engine.capture_shared(image, prompts, {}, depth=4)


@pytest.mark.parametrize('family', FAMILIES)
def test_truncated_model_holds_exactly_the_expected_parameters(model_dirs, family):
    """Resident = full minus the deeper decoder layers and the LM head."""
    path = str(model_dirs[family])
    full = load_model(LoadConfig(path, quantization='none'))
    for exit_layer in (0, 1):
        cut = load_model(LoadConfig(path, quantization='none', exit_layer=exit_layer))
        layers = full.family.decoder_layers(full.base_model)
        deeper = sum(p.numel() for layer in layers[exit_layer + 1:] for p in layer.parameters())
        head = full.model.lm_head.weight
        tied = any(head is p for p in full.base_model.parameters())
        expected = full.resident_parameters() - deeper - (0 if tied else head.numel())
        assert cut.resident_parameters() == expected
        names = {name for name, _ in cut.model.named_parameters()}
        assert not any('lm_head' in name for name in names)
        full_size, cut_size = model_sizes(full.config, exit_layer)
        assert cut_size.total == cut.resident_parameters()
        assert full_size.total == full.resident_parameters()


def test_quantized_model_is_really_4bit(model_dirs):
    """nf4 loading replaces the decoder's linear layers by bitsandbytes 4-bit layers."""
    import bitsandbytes as bnb
    loaded = load_model(LoadConfig(str(model_dirs['llava']), quantization='nf4', exit_layer=1))
    layer = loaded.family.decoder_layers(loaded.base_model)[1]
    assert isinstance(layer.mlp.down_proj, bnb.nn.Linear4bit)
    assert layer.mlp.down_proj.weight.quant_state.quant_type == 'nf4'
    unquantized = load_model(LoadConfig(str(model_dirs['llava']), quantization='none',
                                        exit_layer=1))
    assert loaded.resident_bytes() < unquantized.resident_bytes()
    assert loaded.resident_parameters() == unquantized.resident_parameters()


def test_generation_baselines_need_the_full_model(model_dirs):
    """The LM head paths work on the full model and are refused on a truncated one."""
    path = str(model_dirs['llava'])
    full = Engine(load_model(LoadConfig(path, quantization='none')))
    image = _images(1)[0]
    prompt = full.render_prompt(QUESTIONS[0])
    logits = full.first_token_logits([image], [prompt])
    assert logits.shape == (1, full.loaded.model.lm_head.out_features)
    generated = full.generate_tokens(image, prompt, max_new_tokens=2)
    assert 1 <= generated.new_tokens <= 2
    assert full.generate(image, prompt, max_new_tokens=2) == generated.text  # greedy: the same
    cut = Engine(load_model(LoadConfig(path, quantization='none', exit_layer=0)))
    with pytest.raises(SuperneuronError, match='full model'):
        cut.first_token_logits([image], [prompt])
    with pytest.raises(SuperneuronError, match='full model'):
        cut.generate(image, prompt)


def test_prompt_ends_with_generation_prompt(model_dirs):
    """The rendered prompt ends where the assistant's answer starts."""
    engine = Engine(load_model(LoadConfig(str(model_dirs['qwen2_vl']), quantization='none',
                                          exit_layer=0)))
    prompt = engine.render_prompt('Is there a red shape?')
    assert 'Is there a red shape?' in prompt
    assert prompt.rstrip().endswith('assistant')


def test_missing_folder_and_files(tmp_path, model_dirs):
    """Each missing piece gets its own message."""
    with pytest.raises(ModelLoadError, match='does not exist'):
        load_model(LoadConfig(str(tmp_path / 'nowhere')))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ModelLoadError, match='config.json'):
        load_model(LoadConfig(str(tmp_path / 'empty')))
    no_weights = tmp_path / 'no_weights'
    no_weights.mkdir()
    (no_weights / 'config.json').write_text((model_dirs['llava'] / 'config.json').read_text())
    with pytest.raises(ModelLoadError, match='safetensors'):
        load_model(LoadConfig(str(no_weights)))


def test_unsupported_architecture(tmp_path, model_dirs):
    """A folder of another architecture is refused, naming the supported families."""
    folder = tmp_path / 'other'
    folder.mkdir()
    for item in model_dirs['llava'].iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / 'config.json').read_text())
    config['model_type'] = 'blip-2'
    (folder / 'config.json').write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError, match='LLaVA-1.5.*Qwen2-VL'):
        load_model(LoadConfig(str(folder)))


def test_exit_layer_out_of_range(model_dirs):
    """Exit layers beyond the decoder depth are refused with the valid range."""
    with pytest.raises(LayerRangeError, match=r'valid: 0\.\.3'):
        load_model(LoadConfig(str(model_dirs['llava']), exit_layer=4))
    with pytest.raises(LayerRangeError):
        LoadConfig(str(model_dirs['llava']), exit_layer=-1)
    engine = Engine(load_model(LoadConfig(str(model_dirs['llava']), quantization='none',
                                          exit_layer=0)))
    with pytest.raises(LayerRangeError, match='not loaded'):
        engine.capture(_images(1), [engine.render_prompt('Is it?')], {(1, 'residual'): None})


def test_cuda_asked_but_absent(model_dirs):
    """Asking for CUDA on a machine without it says what to do."""
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    with pytest.raises(DeviceError, match='CUDA is not available'):
        load_model(LoadConfig(str(model_dirs['llava']), device='cuda'))


def test_bitsandbytes_missing(model_dirs, monkeypatch):
    """Without bitsandbytes, 4-bit loading fails with an install hint; 'none' still works."""
    monkeypatch.setitem(sys.modules, 'bitsandbytes', None)
    with pytest.raises(QuantizationError, match='bitsandbytes'):
        load_model(LoadConfig(str(model_dirs['llava']), quantization='nf4'))


def test_bad_images(model_dirs):
    """Images of the wrong type, shape or dtype are refused before the model runs."""
    engine = Engine(load_model(LoadConfig(str(model_dirs['llava']), quantization='none',
                                          exit_layer=0)))
    prompt = engine.render_prompt('Is it?')
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                np.zeros((0, 8, 3), np.uint8), 'image.png'):
        with pytest.raises(ImageError):
            engine.capture([bad], [prompt], SITES)
