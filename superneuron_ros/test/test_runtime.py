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

"""Runtime: per-call depth, one pass per image, the anytime exit, counted in layer calls."""

import dataclasses
import json
from pathlib import Path
import shutil

import numpy as np
import pytest
from superneuron_ros.errors import ProfileError, UnknownTaskError
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench.quick_profiles import bench_tasks, quick_profiles
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.profiles import Profile
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig

SIZE = (40, 48)


@pytest.fixture(scope='module')
def runtime(tmp_path_factory) -> Runtime:
    """Build a tiny LLaVA (4 layers) with one task exiting at layer 0 and one at layer 2."""
    folder = build_model_folder(tmp_path_factory.mktemp('runtime_model'), 'llava', seed=4)
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none', exit_layer=2)))
    folders = quick_profiles(engine, folder, 'none', {'mixed': ([0, 2], 2)}, SIZE, k=3,
                             calibration_images=6, out_dir=tmp_path_factory.mktemp('profiles'))
    first, second = [task.spec.name for task in bench_tasks(2)]
    return Runtime.load(LoadConfig(str(folder), quantization='none'),
                        [folders['mixed'][0] / first, folders['mixed'][2] / second])


@pytest.fixture
def layer_calls(runtime):
    """Yield the forward-call counts of every decoder layer of the runtime's model."""
    counts = [0] * len(runtime.engine.layers)
    handles = [layer.register_forward_hook(
        lambda module, args, output, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, layer in enumerate(runtime.engine.layers)]
    yield counts
    for handle in handles:
        handle.remove()


def _names(runtime: Runtime) -> tuple[str, str]:
    shallow = next(n for n, t in runtime.tasks.items() if t.exit_layer == 0)
    deep = next(n for n, t in runtime.tasks.items() if t.exit_layer == 2)
    return shallow, deep


def _image(seed: int = 0) -> np.ndarray:
    return scenes.render(scenes.random_scene(np.random.default_rng(seed)), SIZE)


def test_a_call_runs_only_the_layers_its_tasks_need(runtime, layer_calls):
    """A layer-0 task runs one layer although a layer-2 task is loaded; both together run 3."""
    shallow, deep = _names(runtime)
    assert runtime.exit_layer == 2 and len(runtime.engine.layers) == 3
    alone = runtime.answer(_image(), [shallow])
    assert layer_calls == [1, 0, 0] and alone.layers_run == 1
    mixed = runtime.answer(_image(), [shallow, deep])
    assert layer_calls == [2, 1, 1] and mixed.layers_run == 3
    assert [p.exit_layer for p in mixed.predictions] == [0, 2]
    runtime.answer(_image(), [deep])
    assert layer_calls == [3, 2, 2]


def test_answers_do_not_depend_on_what_else_is_asked(runtime):
    """A task's answer is the same alone, with other tasks, and from an unshared capture."""
    shallow, deep = _names(runtime)
    for seed in range(3):
        image = _image(seed)
        alone = runtime.answer(image, [shallow]).predictions[0]
        together = runtime.answer(image, [deep, shallow]).predictions[1]
        assert alone.label == together.label
        np.testing.assert_allclose(alone.scores, together.scores, atol=1e-9)
        classifier = runtime.classifiers[deep]
        unshared = runtime.engine.capture([image], [runtime.profiles[deep].prompt],
                                          classifier.requirements)
        reference = classifier.predict_from_sites(
            {site: value.numpy() for site, value in unshared.items()})[0]
        assert runtime.answer(image, [shallow, deep]).predictions[1].label == reference.label


def test_vision_tower_and_processor_run_once_per_call(runtime):
    """K tasks on one frame: one image preprocessing, one vision pass."""
    shallow, deep = _names(runtime)
    calls = {'vision': 0, 'image_processor': 0}
    tower = runtime.loaded.base_model.vision_tower
    handle = tower.register_forward_hook(
        lambda *args: calls.__setitem__('vision', calls['vision'] + 1))
    image_processor = runtime.engine.processor.image_processor
    original = type(image_processor).__call__

    def counting(self, *args, **kwargs):
        calls['image_processor'] += 1
        return original(self, *args, **kwargs)

    type(image_processor).__call__ = counting
    try:
        result = runtime.answer(_image(), [shallow, deep, shallow, deep])
    finally:
        type(image_processor).__call__ = original
        handle.remove()
    assert calls == {'vision': 1, 'image_processor': 1} and len(result.predictions) == 4


@pytest.fixture(scope='module')
def anytime_dirs(runtime, tmp_path_factory):
    """Return make(min_confidence) -> a format-2 profile folder: readouts at layers 0 and 2."""
    _, deep = _names(runtime)
    at_2 = runtime.profiles[deep]
    at_0 = Profile.load(Path(runtime.tasks[deep].profile_path).parents[1] / 'L0' / deep)
    root = tmp_path_factory.mktemp('anytime')

    def make(min_confidence: float) -> Path:
        first = dataclasses.replace(at_0.readouts[-1], min_confidence=min_confidence)
        profile = dataclasses.replace(at_2, readouts=(first, at_2.readouts[-1]))
        folder = root / f'{deep}_{min_confidence}'
        profile.save(folder, overwrite=True)
        return folder

    return make


def _anytime_runtime(runtime: Runtime, folder: Path) -> Runtime:
    """Reuse the loaded model with the shallow profile and the anytime one (as Runtime.load)."""
    shallow, _ = _names(runtime)
    profiles = [runtime.profiles[shallow], Profile.load(folder)]
    return Runtime(runtime.loaded, profiles,
                   [Path(runtime.tasks[shallow].profile_path), folder], runtime.selftest)


def test_anytime_profile_loads_with_two_readouts(runtime, anytime_dirs):
    """A format-2 profile with readouts at layers 0 and 2 loads through Runtime.load."""
    folder = anytime_dirs(0.5)
    loaded = Runtime.load(LoadConfig(runtime.loaded.load_config.model_path,
                                     quantization='none'), [folder])
    try:
        name = next(iter(loaded.classifiers))
        assert loaded.classifiers[name].layers == (0, 2) and loaded.exit_layer == 2
    finally:
        loaded.close()


def test_anytime_profile_stops_at_its_first_confident_layer(runtime, anytime_dirs, layer_calls):
    """Threshold 0: every answer comes from layer 0, one layer runs (the call stops there)."""
    _, deep = _names(runtime)
    anytime = _anytime_runtime(runtime, anytime_dirs(0.0))
    for seed in range(3):
        result = anytime.answer(_image(seed), [deep])
        assert result.layers_run == 1 and result.predictions[0].exit_layer == 0
    assert layer_calls == [3, 0, 0]
    result = anytime.answer(_image(), list(anytime.tasks))  # with the layer-0 task: still 1
    assert result.layers_run == 1 and layer_calls == [4, 0, 0]


def test_anytime_exit_follows_the_layer_0_confidence(runtime, anytime_dirs, layer_calls):
    """Threshold 1: layer 0 answers only when its vote is unanimous, else layer 2 does."""
    _, deep = _names(runtime)
    anytime = _anytime_runtime(runtime, anytime_dirs(1.0))
    classifier = anytime.classifiers[deep]
    prompt = anytime.profiles[deep].prompt
    expected_calls = [0, 0, 0]
    exits = set()
    for seed in range(8):
        image = _image(seed)
        unshared = anytime.engine.capture([image], [prompt], classifier.requirements_at(0))
        first = classifier.predict_at(0, {k: v.numpy() for k, v in unshared.items()})[0]
        result = anytime.answer(image, [deep])
        assert first.confident == (first.confidence >= 1.0)
        layer = 0 if first.confident else 2
        exits.add(layer)
        assert result.predictions[0].exit_layer == layer and result.layers_run == layer + 1
        # the unshared reference pass ran layer 0 once more
        expected_calls = [c + (i <= layer) + (i == 0) for i, c in enumerate(expected_calls)]
    assert layer_calls == expected_calls
    assert 2 in exits  # at least one image needed the deeper readout


def test_task_info_and_errors(runtime):
    """yes/no tasks carry the index of 'yes' from TaskSpec; unknown or no tasks are refused."""
    for info in runtime.tasks.values():
        assert info.yes_index == runtime.profiles[info.name].task.yes_index == 0
        assert Path(info.profile_path).is_dir()
    with pytest.raises(UnknownTaskError, match='unknown'):
        runtime.answer(_image(), ['nope'])
    with pytest.raises(UnknownTaskError, match='no task'):
        runtime.answer(_image(), [])
    result = runtime.answer(_image(), list(runtime.tasks))
    assert result.times.classify_ms > 0 and result.times.decoder_ms > 0


def test_a_prompt_without_the_image_placeholder_is_refused_at_load(tmp_path):
    """A profile whose prompt lost the model's image token fails the load, naming it."""
    data = Path(__file__).resolve().parents[1] / 'superneuron_ros' / 'data'
    profile = shutil.copytree(data / 'demo_profiles' / 'blue_present', tmp_path / 'blue_present')
    meta = json.loads((profile / 'profile.json').read_text(encoding='utf-8'))
    assert '<image>' in meta['prompt']
    config = LoadConfig(str(data / 'demo_model'), 'nf4', 'cpu')
    Runtime.load(config, [profile]).close()  # as shipped: loads
    meta['prompt'] = meta['prompt'].replace('<image>', '')
    (profile / 'profile.json').write_text(json.dumps(meta), encoding='utf-8')
    with pytest.raises(ProfileError, match="image placeholder '<image>'"):
        Runtime.load(config, [profile])
