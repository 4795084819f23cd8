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

"""Benchmarks: the measurement logic on a tiny model (never its timings)."""

from pathlib import Path
import time

import numpy as np
import pytest
from superneuron_ros.errors import DataError, LayerRangeError
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench import BenchConfig, Clock, run_benchmark, run_interleaved, summarize
from superneuron_ros.lab.bench.memory import meta_sizes, probe_memory
from superneuron_ros.lab.bench.paths import (floor_pass, FullModelPaths, image_tokens, layer_view,
                                             vision_side)
from superneuron_ros.lab.bench.quick_profiles import (balanced_scenes, bench_tasks, capture_layers,
                                                      quick_profiles)
from superneuron_ros.lab.bench.timing import paired_ratios
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.baseline import label_token_ids
from superneuron_ros.method.probing import fit_stumps
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.capture import SITES
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
import torch

SIZE = (40, 48)


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
    """Build a tiny LLaVA (4 decoder layers) once for this module."""
    return build_model_folder(tmp_path_factory.mktemp('bench_model'), 'llava', seed=3)


@pytest.fixture(scope='module')
def profile_dirs(folder, tmp_path_factory) -> dict:
    """Calibrate benchmark profiles: 3 tasks at layer 1, 1 task at layers 0 and 2."""
    loaded = load_model(LoadConfig(str(folder), quantization='none', exit_layer=2))
    plan = {'main': ([1], 3), 'layers': ([0, 2], 1)}
    return quick_profiles(Engine(loaded), folder, 'none', plan, SIZE, k=3, calibration_images=6,
                          out_dir=tmp_path_factory.mktemp('bench_profiles'))


# ----------------------------------------------------------------------------- timing


def test_summarize_median_quartiles_and_extremes():
    """Summaries interpolate quartiles linearly and keep the extremes."""
    stats = summarize([4.0, 1.0, 3.0, 2.0])
    assert (stats.n, stats.median, stats.minimum, stats.maximum) == (4, 2.5, 1.0, 4.0)
    assert stats.p25 == pytest.approx(1.75) and stats.p75 == pytest.approx(3.25)
    assert stats.iqr == pytest.approx(1.5) and stats.mean == pytest.approx(2.5)
    assert summarize([7.0]).p25 == 7.0
    with pytest.raises(ValueError):
        summarize([])


def test_paired_ratios_pair_repeats():
    """Per-repeat ratios pair the i-th sample of each side."""
    stats = paired_ratios([2.0, 9.0, 4.0], [1.0, 3.0, 4.0])
    assert (stats.minimum, stats.median, stats.maximum) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_run_interleaved_rotates_and_does_not_record_warmup():
    """Warm-up calls get negative indices and no timings; each repeat starts one case later."""
    calls = []
    cases = {name: (lambda r, name=name: calls.append((name, r)) or f'{name}{r}')
             for name in 'abc'}
    measured = run_interleaved(cases, Clock(torch.device('cpu')), repeats=4, warmup=2)
    assert calls[:6] == [('a', -1), ('b', -1), ('c', -1), ('a', -2), ('b', -2), ('c', -2)]
    assert measured.order == [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b'],
                              ['a', 'b', 'c']]
    assert calls[6:9] == [('a', 0), ('b', 0), ('c', 0)] and calls[9] == ('b', 1)
    assert measured.results['c'] == ['c0', 'c1', 'c2', 'c3']
    assert all(len(v) == 4 and min(v) >= 0 for v in measured.times.values())
    assert set(measured.stats()) == {'a', 'b', 'c'}
    with pytest.raises(ValueError):
        run_interleaved(cases, Clock(torch.device('cpu')), repeats=0)


def test_clock_counts_the_call():
    """A call that sleeps 20 ms is timed at 20 ms or more, and its result is returned."""
    result, elapsed = Clock(torch.device('cpu')).time(lambda: time.sleep(0.02) or 'done')
    assert result == 'done' and elapsed >= 20.0


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize('kwargs', [
    {}, {'model_path': 'x', 'preset': 'demo'}, {'preset': 'demo', 'exit_layer': -1},
    {'preset': 'demo', 'tasks': 10}, {'preset': 'demo', 'task_counts': (1, 16)},
    {'preset': 'demo', 'image_size': (4, 4)}, {'preset': 'demo', 'quantization': 'q3'},
    {'preset': 'demo', 'calibration_images': 3}, {'preset': 'demo', 'layers': (-1,)},
    {'preset': 'demo', 'repeats': 0}])
def test_config_rejects_bad_fields(kwargs):
    """Every invalid field raises ValueError."""
    with pytest.raises(ValueError):
        BenchConfig(**kwargs)


def test_cli_presets_are_the_zoo_presets():
    """The CLI lists the zoo's presets without importing the zoo to build its parser."""
    from superneuron_ros.cli.bench import PRESET_NAMES
    from superneuron_ros.lab.zoo import PRESETS
    assert set(PRESET_NAMES) == set(PRESETS)


def test_config_normalises_lists():
    """Sweep lists are sorted and deduplicated; sizes become tuples."""
    config = BenchConfig(preset='demo', layers=[3, 0, 3], image_size=[32, 48])
    assert config.layers == (0, 3) and config.image_size == (32, 48)
    assert config.to_dict()['layers'] == [0, 3]


# ----------------------------------------------------------------------------- profiles


def test_balanced_scenes_give_each_label_twice():
    """Chosen scenes give every task two examples of each label, the same for the same seed."""
    tasks = bench_tasks(8)
    chosen = balanced_scenes(tasks, 8, seed=5)
    for task in tasks:
        labels = [task.truth(scene) for scene in chosen]
        assert labels.count('yes') >= 2 and labels.count('no') >= 2, task.spec.name
    assert chosen == balanced_scenes(tasks, 8, seed=5)
    assert len({task.spec.name for task in bench_tasks(9)}) == 9
    with pytest.raises(DataError):
        balanced_scenes(tasks, 3)
    with pytest.raises(DataError):
        bench_tasks(10)


def test_quick_profiles_fit_real_thresholds_at_the_exit_layer(folder, profile_dirs):
    """Profiles hold k neurons of their exit layer with thresholds fitted on real activations."""
    assert sorted(profile_dirs['main']) == [1] and sorted(profile_dirs['layers']) == [0, 2]
    main = [Profile.load(p) for p in find_profiles([profile_dirs['main'][1]])]
    tasks = bench_tasks(3)
    assert [p.task.name for p in main] == sorted(t.spec.name for t in tasks)
    for profile in main:
        assert len(profile.index) == 3 and set(profile.layer.tolist()) == {1}
        assert profile.fingerprint.hash_layer == 1 and profile.kind == 'stump'
    # Refit the first task's thresholds from activations captured again: the same stumps.
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none', exit_layer=1)))
    chosen = balanced_scenes(tasks, 6, seed=0)
    images = [scenes.render(scene, SIZE) for scene in chosen]
    profile = next(p for p in main if p.task.name == tasks[0].spec.name)
    values = capture_layers(engine, images, [profile.prompt], [1])
    x = torch.cat([values[(1, site)][:, 0] for site in SITES], dim=1)  # [n, hidden + inter]
    offset = {'residual': 0, 'mlp': values[(1, 'residual')].shape[2]}
    columns = [offset[n.site] + n.index for n in profile.neurons]
    y = torch.tensor([tasks[0].spec.label_index(tasks[0].truth(s)) for s in chosen])
    refit = fit_stumps(x[:, columns], y)
    np.testing.assert_allclose(profile.threshold, refit.threshold.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(profile.polarity, refit.polarity.numpy())


# ----------------------------------------------------------------------------- paths


class _CallCounter:
    """Count forward calls of modules."""

    def __init__(self, modules: dict) -> None:
        self.counts = dict.fromkeys(modules, 0)
        self.handles = [module.register_forward_hook(self._hook(name))
                        for name, module in modules.items()]

    def _hook(self, name):
        def hook(module, args, output):
            self.counts[name] += 1
        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def test_floor_and_runtime_run_vision_once_and_layers_0_to_l(folder, profile_dirs):
    """(c) and (d) run the vision tower once for K prompts and exactly layers 0..L."""
    runtime = Runtime.load(LoadConfig(str(folder), quantization='none'),
                           [profile_dirs['main'][1]])
    base = runtime.loaded.base_model
    layers = runtime.engine.layers
    assert len(layers) == 2
    counter = _CallCounter({'vision': base.vision_tower, 'layer0': layers[0],
                            'layer1': layers[1]})
    image = scenes.render(scenes.random_scene(np.random.default_rng(0)), SIZE)
    names = list(runtime.profiles)
    try:
        result = runtime.answer(image, names)
        assert counter.counts == {'vision': 1, 'layer0': 1, 'layer1': 1}
        times = floor_pass(runtime.engine, image, [runtime.profiles[n].prompt for n in names])
        assert counter.counts == {'vision': 2, 'layer0': 2, 'layer1': 2}
    finally:
        counter.close()
    assert len(result.predictions) == 3 and times.decoder_ms > 0 and times.classify_ms == 0
    tokens, length = image_tokens(runtime.engine, image, runtime.profiles[names[0]].prompt)
    assert 0 < tokens < length


def test_layer_view_runs_only_layers_0_to_l(folder):
    """A view at layer 0 of a model truncated at 2 equals a model truncated at 0; then restores."""
    deep = load_model(LoadConfig(str(folder), quantization='none', exit_layer=2))
    shallow = Engine(load_model(LoadConfig(str(folder), quantization='none', exit_layer=0)))
    image = scenes.render(scenes.random_scene(np.random.default_rng(1)), SIZE)
    prompt = shallow.render_prompt('Is there a red shape in the image?')
    sites = {(0, 'residual'): None}
    layer1 = deep.base_model.language_model.layers[1]
    with layer_view(deep, 0) as view:
        engine = Engine(view)
        assert engine.num_loaded_layers == 1 and view.load_config.exit_layer == 0
        counter = _CallCounter({'layer1': layer1})
        try:
            floor_pass(engine, image, [prompt])
        finally:
            counter.close()
        assert counter.counts['layer1'] == 0
        seen = engine.capture([image], [prompt], sites)
    torch.testing.assert_close(seen[(0, 'residual')],
                               shallow.capture([image], [prompt], sites)[(0, 'residual')],
                               atol=1e-5, rtol=0)
    assert len(Engine(deep).layers) == 3
    with pytest.raises(LayerRangeError):
        with layer_view(deep, 3):
            pass


def test_vision_side_bounds_qwen_image_tokens(tmp_path, folder):
    """A vision side bounds Qwen's resize (one token per merged block) and is restored."""
    from superneuron_ros.lab.zoo.processors import qwen_factor
    qwen = build_model_folder(tmp_path / 'qwen', 'qwen2_vl', seed=0)
    engine = Engine(load_model(LoadConfig(str(qwen), quantization='none', exit_layer=0)))
    factor = qwen_factor(engine.loaded.config)
    image = scenes.render(scenes.random_scene(np.random.default_rng(3)), (8 * factor,) * 2)
    prompt = engine.render_prompt('Is there a red shape?')
    before = image_tokens(engine, image, prompt)[0]
    with vision_side(engine, 2 * factor) as bounded:
        assert bounded and image_tokens(engine, image, prompt)[0] == 4
    assert image_tokens(engine, image, prompt)[0] == before > 4
    llava = Engine(load_model(LoadConfig(str(folder), quantization='none', exit_layer=0)))
    size = llava.processor.image_processor.size
    with vision_side(llava, 64) as bounded:
        assert not bounded
    assert llava.processor.image_processor.size == size


def test_full_model_paths_answer_with_labels(folder):
    """(a) generates at most N tokens and maps text to labels; (b) picks one of the labels."""
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none')))
    tasks = [task.spec for task in bench_tasks(2)]
    paths = FullModelPaths(engine, tasks, max_new_tokens=2)
    image = scenes.render(scenes.random_scene(np.random.default_rng(2)), SIZE)
    generated = paths.generate(image)
    assert len(generated) == 2 and all(1 <= g.new_tokens <= 2 for g in generated)
    for task, prompt, answer in zip(tasks, paths.prompts, generated):
        assert answer.text == engine.generate(image, prompt, max_new_tokens=2)
        assert answer.label_index == task.match_answer(answer.text)
    # (b) is the restricted baseline's rule: per task, the label whose best first token wins.
    logits = engine.first_token_logits([image] * 2, paths.prompts)  # [2, V]
    expected = []
    for row, task, prompt in zip(logits, tasks, paths.prompts):
        tokens = label_token_ids(engine.processor.tokenizer, prompt, task.labels)
        expected.append(int(np.argmax([max(float(row[t]) for t in ids) for ids in tokens])))
    assert paths.prefill(image) == expected
    assert paths.label_tokens[0] == label_token_ids(engine.processor.tokenizer, paths.prompts[0],
                                                    tasks[0].labels)


# ----------------------------------------------------------------------------- memory


def test_meta_sizes_match_loaded_parameters(folder):
    """Meta-device counts equal the parameters of the loaded full and truncated models."""
    config = load_model(LoadConfig(str(folder), quantization='none')).config
    sizes = meta_sizes(config, 1)
    full = load_model(LoadConfig(str(folder), quantization='none'))
    cut = load_model(LoadConfig(str(folder), quantization='none', exit_layer=1))
    assert sizes['full']['parameters'] == full.resident_parameters()
    assert sizes['truncated']['parameters'] == cut.resident_parameters()
    assert sizes['truncated']['decoder_layers'] == 2
    assert sizes['parameter_ratio'] == pytest.approx(
        cut.resident_parameters() / full.resident_parameters())
    assert sizes['full']['bytes_float32'] == 2 * sizes['full']['bytes_float16']


def test_memory_only_sizes_llava_7b_without_weights(tmp_path):
    """The 7B shape is sized on the meta device: no folder is built; the 15% target is met."""
    report = run_benchmark(BenchConfig(preset='llava-1.5-7b', memory_only=True,
                                       cache_dir=str(tmp_path)))
    meta = report['memory']['meta']
    assert 7.0e9 < meta['full']['parameters'] < 7.1e9
    assert meta['parameter_ratio'] < 0.15 and 'main' not in report
    assert not any(tmp_path.iterdir())
    target = next(t for t in report['targets'] if 'LLaVA' in t['target'])
    assert target['applies'] and target['met']


def test_memory_probe_runs_in_its_own_process(folder):
    """A probe reports resident bytes and a peak RSS above its baseline."""
    probe = probe_memory(str(folder), 'none', 1, 'cpu', 'auto', SIZE)
    assert 'error' not in probe, probe
    assert probe['exit_layer'] == 1 and probe['resident_bytes'] > 0
    assert probe['peak_load_rss_bytes'] >= probe['rss_after_load_bytes'] \
        >= probe['rss_baseline_bytes'] > 0
    assert probe['peak_rss_bytes'] >= probe['peak_load_rss_bytes']
    answering = probe['peak_pass_rss_bytes']  # None where the peak cannot be reset
    assert answering is None or probe['peak_rss_bytes'] >= answering > 0
