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


"""The vision side: one setting from calibration to the profile to the runtime's processor."""

import dataclasses
from pathlib import Path

from calibrated_fixture import torch_threads
import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import ProfileMismatchError, VisionSideError
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.resolutions import profile_image_size
from superneuron_ros.method.tasks import load_image, load_labelled_set, TaskSpec
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
from superneuron_ros.vlm.vision_side import apply_image_size, apply_vision_side, vision_size

pytest_plugins = ['calibrated_fixture', 'zoo_fixtures']  # calibrated_red_present, zoo_folder
SIDE = 32  # the tiny Qwen2-VL's default bound is 64 (4 x 4 merged tokens of 16 pixels)


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny models run many times faster on one thread of a busy machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope='module')
def qwen(tmp_path_factory) -> dict:
    """Return a tiny Qwen2-VL, 64-pixel scenes and a red_present profile made at side 32."""
    root = tmp_path_factory.mktemp('vision_side')
    model = build_model_folder(root / 'model', 'qwen2_vl', seed=0)
    write_dataset(root / 'scenes', n=60, seed=0, size=64, tasks=['red_present'])
    task = TaskSpec.from_yaml(root / 'scenes' / 'tasks' / 'red_present.yaml')
    examples = load_labelled_set(root / 'scenes' / 'red_present.jsonl', task)
    options = CalibrationOptions(quantization='none', baseline=False, progress=False,
                                 max_layer=1, folds=3, repeats=1, sizes=(4,), k=3,
                                 ceiling=False, vision_side=SIDE)
    result = calibrate(model, task, examples, options)
    path = result.save(root / 'profiles' / 'red_present')
    return {'root': root, 'model': model, 'task': task, 'examples': examples,
            'result': result, 'profile_dir': path}


def _image_tokens(engine, image: np.ndarray) -> int:
    """Return how many image tokens the engine's processor gives `image`."""
    _, sequences = engine.prompt_sequences(image, [engine.render_prompt('Is there red?')])
    return int((np.array(sequences[0]) == engine.loaded.config.image_token_id).sum())


def test_a_side_bounds_variable_resolution_families_and_fixed_ones_refuse(zoo_folder):
    """Qwen: a pixel budget of side x side; SmolVLM: whole tiles; LLaVA: refused, unchanged."""
    qwen = load_model(LoadConfig(str(zoo_folder('qwen2_vl')), quantization='none',
                                 exit_layer=0))
    ip = qwen.processor.image_processor
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    engine = Engine(qwen)
    assert _image_tokens(engine, image) == 16  # the default: 64 x 64 pixels, 16-pixel tokens
    assert apply_vision_side(qwen.family, ip, SIDE) == (SIDE, SIDE)
    assert ip.size['longest_edge'] == SIDE * SIDE
    assert _image_tokens(engine, image) == 4  # 32 x 32 pixels
    with pytest.raises(VisionSideError, match='at least 16'):  # below one merged token
        apply_vision_side(qwen.family, ip, 10)
    assert ip.size['longest_edge'] == SIDE * SIDE  # a refused side changes nothing
    with pytest.raises(VisionSideError, match='square'):
        apply_image_size(qwen.family, ip, (32, 48))
    smol = load_model(LoadConfig(str(zoo_folder('smolvlm')), quantization='none',
                                 exit_layer=0))
    tile = int(smol.processor.image_processor.max_image_size['longest_edge'])
    assert vision_size(smol.family, smol.processor.image_processor,
                       int(2.2 * tile)) == (2 * tile, 2 * tile)  # rounded to whole tiles
    with pytest.raises(VisionSideError, match=f'a side of {tile + 1} sets {tile}x{tile}'):
        apply_image_size(smol.family, smol.processor.image_processor, (tile + 1, tile + 1))
    llava = load_model(LoadConfig(str(zoo_folder('llava')), quantization='none',
                                  exit_layer=0))
    before = dict(llava.processor.image_processor.size)
    with pytest.raises(VisionSideError, match='fixed vision input'):
        apply_vision_side(llava.family, llava.processor.image_processor, 224)
    assert dict(llava.processor.image_processor.size) == before


def test_calibration_records_the_size_and_the_runtime_sets_it_at_load(qwen):
    """The profile and report carry 32x32; Runtime.load puts the processor back at 32 x 32."""
    result = qwen['result']
    assert result.profile.image_size == (SIDE, SIDE)
    assert result.report['image_size'] == [SIDE, SIDE]
    assert result.report['options']['vision_side'] == SIDE
    loaded = Profile.load(qwen['profile_dir'])
    assert loaded.image_size == (SIDE, SIDE) and loaded == result.profile
    runtime = Runtime.load(LoadConfig(str(qwen['model']), quantization='none'),
                           [qwen['profile_dir']])
    image = load_image(qwen['examples'][0].image_path)
    assert runtime.loaded.processor.image_processor.size['longest_edge'] == SIDE * SIDE
    assert _image_tokens(runtime.engine, image) == 4
    answer = runtime.answer(image, ['red_present']).predictions[0]
    assert answer.label in qwen['task'].labels
    runtime.close()


def _renamed(profile: Profile, name: str, **changes) -> Profile:
    return dataclasses.replace(profile, task=dataclasses.replace(profile.task, name=name),
                               **changes)


def test_profiles_of_two_sizes_or_a_size_the_model_cannot_take_are_refused(
        qwen, calibrated_red_present, tmp_path):
    """A mix of resolutions, an unroundable size and a size on a fixed family fail the load."""
    profile = qwen['result'].profile
    other = _renamed(profile, 'red_default', image_size=None)
    with pytest.raises(ProfileMismatchError, match='different resolutions'):
        profile_image_size([profile, other])
    assert profile_image_size([profile, _renamed(profile, 'again')]) == (SIDE, SIDE)
    other.save(tmp_path / 'mixed' / 'red_default')
    profile.save(tmp_path / 'mixed' / 'red_present')
    config = LoadConfig(str(qwen['model']), quantization='none')
    with pytest.raises(ProfileMismatchError, match=r"'red_default' at the processor's default "
                                                   r'size.*--vision-side'):
        Runtime.load(config, [tmp_path / 'mixed'])
    _renamed(profile, 'odd', image_size=(32, 40)).save(tmp_path / 'odd')
    with pytest.raises(ProfileMismatchError, match='32x40, which this model cannot be set to'):
        Runtime.load(config, [tmp_path / 'odd'])
    llava = Profile.load(calibrated_red_present.profile_dir)
    dataclasses.replace(llava, image_size=(224, 224)).save(tmp_path / 'llava')
    with pytest.raises(ProfileMismatchError, match='fixed vision input'):
        Runtime.load(LoadConfig(str(calibrated_red_present.model_dir), quantization='none'),
                     [tmp_path / 'llava'])


def test_cli_calibrate_refuses_a_vision_side_on_a_fixed_input_family(
        calibrated_red_present, tmp_path, caplog):
    """`superneuron calibrate --vision-side` on LLaVA fails with the reason and writes nothing."""
    setup = calibrated_red_present
    out = tmp_path / 'profile'
    code = main(['calibrate', '--model', str(setup.model_dir), '--task', str(setup.task_file),
                 '--data', str(setup.data_file), '--out', str(out), '--quantization', 'none',
                 '--max-layer', '0', '--no-baseline', '--no-progress', '--vision-side', '224'])
    assert code == 2 and not Path(out).exists()
    assert 'fixed vision input' in caplog.text
