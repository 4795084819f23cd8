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

"""Runtime.load with max_exit_layer, and profiles added and removed at run time (no ROS)."""

from pathlib import Path

import numpy as np
import pytest
from superneuron_ros.errors import ProfileError, ProfileMismatchError, UnknownTaskError
from superneuron_ros.lab import scenes
from superneuron_ros.lab.bench.quick_profiles import bench_tasks, quick_profiles
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.profiles import Profile
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig

SIZE = (40, 48)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Return (model folder, {layer: {task: profile folder}}) for a tiny 4-layer LLaVA."""
    folder = build_model_folder(tmp_path_factory.mktemp('model'), 'llava', seed=4)
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none', exit_layer=2)))
    folders = quick_profiles(engine, folder, 'none', {'p': ([0, 2], 3)}, SIZE, k=3,
                             calibration_images=6, out_dir=tmp_path_factory.mktemp('profiles'))
    names = [task.spec.name for task in bench_tasks(3)]
    return folder, {layer: {n: folders['p'][layer] / n for n in names} for layer in (0, 2)}


def _config(folder: Path) -> LoadConfig:
    return LoadConfig(str(folder), quantization='none')


def _image() -> np.ndarray:
    return scenes.render(scenes.random_scene(np.random.default_rng(0)), SIZE)


def test_max_exit_layer_loads_deeper_than_the_profiles(setup):
    """max_exit_layer 2 with a layer-0 profile loads 3 layers; None or -1 loads the profile's."""
    folder, profiles = setup
    first, *_ = profiles[0]
    runtime = Runtime.load(_config(folder), [profiles[0][first]], max_exit_layer=2)
    assert runtime.loaded_depth == 3 and runtime.exit_layer == 2
    assert list(runtime.tasks) == [first]
    for room in (None, -1):
        shallow = Runtime.load(_config(folder), [profiles[0][first]], max_exit_layer=room)
        assert shallow.loaded_depth == 1 and shallow.exit_layer == 0


def test_empty_runtime_then_profiles_added_and_removed(setup):
    """A runtime with no profiles takes some later, answers them, and drops them again."""
    folder, profiles = setup
    first, second, _ = profiles[0]
    with pytest.raises(ProfileError, match='max_exit_layer'):
        Runtime.load(_config(folder), [])
    runtime = Runtime.load(_config(folder), [], max_exit_layer=2)
    assert runtime.tasks == {} and runtime.loaded_depth == 3
    added = runtime.add_profiles([profiles[0][first], profiles[2][second]])
    assert [(t.name, t.exit_layer) for t in added] == [(first, 0), (second, 2)]
    assert list(runtime.tasks) == [first, second]
    result = runtime.answer(_image(), [first, second])
    assert [p.exit_layer for p in result.predictions] == [0, 2]
    runtime.remove_tasks([second])
    assert list(runtime.tasks) == [first] and list(runtime.profiles) == [first]
    with pytest.raises(UnknownTaskError):
        runtime.answer(_image(), [second])  # the cached plan of [first, second] is gone too
    assert runtime.answer(_image(), [first]).predictions[0].exit_layer == 0


def test_a_profile_deeper_than_loaded_is_refused_with_the_fix(setup):
    """A layer-2 profile on a runtime loaded to layer 0: names the layer, depth and the fix."""
    folder, profiles = setup
    first, second, third = profiles[0]
    runtime = Runtime.load(_config(folder), [profiles[0][first]])
    assert runtime.loaded_depth == 1
    with pytest.raises(ProfileError) as info:
        runtime.add_profiles([profiles[0][second], profiles[2][third]])
    message = str(info.value)
    assert 'needs decoder layer 2' in message and 'loaded only 1 layer' in message
    assert 'set max_exit_layer >= 2 and reconfigure (cleanup + configure)' in message
    assert list(runtime.tasks) == [first]  # all or nothing: the fitting one was not added


def test_duplicates_and_unknown_names_change_nothing(setup):
    """A task loaded already, or twice in one call, and an unknown removal are refused."""
    folder, profiles = setup
    first, second, _ = profiles[0]
    runtime = Runtime.load(_config(folder), [profiles[0][first]], max_exit_layer=2)
    with pytest.raises(ProfileError, match='defined twice'):
        runtime.add_profiles([profiles[2][first]])  # same task, other layer
    with pytest.raises(ProfileError, match='defined twice'):
        runtime.add_profiles([profiles[0][second], profiles[2][second]])
    with pytest.raises(UnknownTaskError, match='nope'):
        runtime.remove_tasks([first, 'nope'])
    assert list(runtime.tasks) == [first]
    # Replacing a task in one change: remove the old profile and add the new one at once.
    change = runtime.prepare_change(add=[profiles[2][first]], remove=[first])
    assert change.tasks_after(list(runtime.tasks)) == [first]
    runtime.commit(change)
    assert runtime.tasks[first].exit_layer == 2


def test_a_profile_of_another_model_is_refused(setup, tmp_path):
    """The fingerprint is checked as at load: another model's profile is not added."""
    folder, profiles = setup
    first, second, _ = profiles[0]
    other = Profile.load(profiles[0][second])
    foreign = other.fingerprint.__class__(**{**other.fingerprint.to_dict(),
                                             'weights_hash': 'ab' * 32})
    Profile(task=other.task, prompt=other.prompt, exit_layer=other.exit_layer,
            readouts=other.readouts, fingerprint=foreign,
            metrics=other.metrics).save(tmp_path / second)
    runtime = Runtime.load(_config(folder), [profiles[0][first]])
    with pytest.raises(ProfileMismatchError):
        runtime.add_profiles([tmp_path / second])
    assert list(runtime.tasks) == [first]


def test_model_fingerprint_is_the_one_profiles_record(setup):
    """Runtime.model_fingerprint(L) equals the fingerprint a profile exiting at L carries."""
    folder, profiles = setup
    first, *_ = profiles[0]
    runtime = Runtime.load(_config(folder), [], max_exit_layer=2)
    for layer in (0, 2):
        assert runtime.model_fingerprint(layer) == Profile.load(profiles[layer][first]).fingerprint


def test_override_warnings_come_and_go_with_their_profile(setup, tmp_path):
    """A profile run under another quantization warns while loaded, not after its removal."""
    folder, profiles = setup
    first, second, _ = profiles[0]
    other = Profile.load(profiles[0][second])
    nf4 = other.fingerprint.__class__(**{**other.fingerprint.to_dict(), 'quantization': 'nf4',
                                         'quantized_modules': 'language'})
    Profile(task=other.task, prompt=other.prompt, exit_layer=other.exit_layer,
            readouts=other.readouts, fingerprint=nf4,
            metrics=other.metrics).save(tmp_path / second)
    config = LoadConfig(str(folder), quantization='none', allow_quantization_mismatch=True)
    runtime = Runtime.load(config, [profiles[0][first]])
    assert runtime.warnings == ()
    runtime.add_profiles([tmp_path / second])
    assert len(runtime.warnings) == 1 and repr(second) in runtime.warnings[0]
    runtime.remove_tasks([second])
    assert runtime.warnings == ()
