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
import json
from pathlib import Path

from calibrated_fixture import torch_threads
import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import ProfileMismatchError, VisionSideError
from superneuron_ros.lab.evaluate import evaluate, EvaluationOptions
from superneuron_ros.lab.report import format_calibration_table, plot_calibration
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.zoo import build_model_folder, FAMILIES
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.resolution_sweep import keep_side
from superneuron_ros.method.resolutions import profile_image_size
from superneuron_ros.method.tasks import load_image, load_labelled_set, TaskSpec
from superneuron_ros.method.vision_only import NO_LANGUAGE_LAYER, vision_only_row
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.capture import VISION
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
from superneuron_ros.vlm.vision_side import apply_image_size, apply_vision_side, vision_size
import torch

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
    apply_image_size(qwen.family, ip, (48, 48))
    assert ip.size['longest_edge'] == 48 * 48
    apply_image_size(qwen.family, ip, None)  # the processor's own default again
    assert ip.size['longest_edge'] == 64 * 64 and _image_tokens(engine, image) == 16
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


@pytest.mark.parametrize('family', FAMILIES)
def test_the_engine_reads_the_image_features_in_the_same_pass(zoo_folder, family):
    """VISION is the projector output averaged per image, from the pass's one vision run."""
    loaded = load_model(LoadConfig(str(zoo_folder(family)), quantization='none', exit_layer=1))
    engine = Engine(loaded)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 48 + 16 * i, 3), dtype=np.uint8) for i in range(2)]
    prompts = [engine.render_prompt('Is there red?')] * 2
    runs = []
    original = type(loaded.base_model).get_image_features

    def counted(self, *args, **kwargs):
        runs.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(loaded.base_model), 'get_image_features', counted)
        values = engine.capture(images, prompts, {(1, 'residual'): None, VISION: None})
    hidden = loaded.family.text_config(loaded.config).hidden_size
    assert len(runs) == 1 and values[VISION].shape == (2, hidden)
    assert values[(1, 'residual')].shape[0] == 2
    for i, image in enumerate(images):
        inputs = engine.preprocess([image], [prompts[0]])
        with torch.inference_mode():
            features = loaded.family.image_features(loaded.base_model, inputs).pooler_output
        torch.testing.assert_close(values[VISION][i], features[0].float().mean(dim=0),
                                   rtol=1e-5, atol=1e-6)
    assert 'get_image_features' not in vars(loaded.base_model)  # the wrapper is gone
    assert VISION not in engine.capture(images, prompts, {(0, 'residual'): None})


def _colour_set(root: Path, task: TaskSpec, n: int = 48) -> list:
    """Write solid red or blue noisy images labelled yes / no; return the labelled set."""
    from PIL import Image
    rng = np.random.default_rng(1)
    lines = []
    (root / 'images').mkdir(parents=True)
    for i in range(n):
        red = i % 2 == 0
        colour = np.array([200, 30, 30] if red else [30, 30, 200])
        pixels = np.clip(colour + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / 'images' / f'{i}.png')
        lines.append(json.dumps({'image': f'images/{i}.png', 'task': task.name,
                                 'answer': 'yes' if red else 'no'}))
    (root / 'set.jsonl').write_text('\n'.join(lines) + '\n')
    return load_labelled_set(root / 'set.jsonl', task)


def test_the_vision_only_row_is_cross_validated_and_reads_a_planted_colour(
        calibrated_red_present, tmp_path):
    """On solid red / blue images the image features alone answer: the report says so."""
    setup = calibrated_red_present
    examples = _colour_set(tmp_path, setup.task)
    options = CalibrationOptions(quantization='none', baseline=False, progress=False,
                                 max_layer=1, folds=3, repeats=1, sizes=(4, 8), k=3)
    report = calibrate(setup.model_dir, setup.task, examples, options).report
    row = report['vision_only']
    assert row['layer'] == 'vision' and row['size'] == report['search']['site_sizes']['residual']
    assert {'vote', 'linear', 'm4', 'm8', 'ceiling'} <= set(row['readouts'])
    assert all(cell['folds'] == 3 for cell in row['readouts'].values())
    assert row['selection'] >= 0.9  # the colour is in the image features
    assert row['needs_language_layer'] == (row['gap'] > options.tolerance)
    table = format_calibration_table(report)
    assert any(line.split()[0] == 'vision' for line in table.splitlines()[2:4])
    if not row['needs_language_layer']:
        assert row['note'] == NO_LANGUAGE_LAYER and NO_LANGUAGE_LAYER in table
    plot_calibration(report, tmp_path / 'report.png')
    skipped = calibrate(setup.model_dir, setup.task, examples,
                        dataclasses.replace(options, vision_only=False)).report
    assert skipped['vision_only'] is None and 'vision:' not in format_calibration_table(skipped)


def test_vision_only_rows_separate_signal_from_noise():
    """A planted coordinate gives a near-perfect row; pure noise stays near chance."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    noise = torch.from_numpy(rng.normal(size=(120, 32))).float()
    planted = noise.clone()
    planted[:, 5] += 8.0 * torch.from_numpy(y).float()
    settings = CalibrationOptions(folds=4, repeats=1, sizes=(4,), k=3).settings()
    good = vision_only_row(planted, y, 2, settings, (4,), 'auto', 0.01, 0.99)
    bad = vision_only_row(noise, y, 2, settings, (4,), 'auto', 0.01, 0.99)
    assert good['selection'] >= 0.9 and not good['needs_language_layer']
    assert bad['selection'] <= 0.7 and bad['needs_language_layer'] and 'note' not in bad


def test_keep_side_takes_the_cheapest_within_the_tolerance():
    """The rule: cheapest (vision + decoder ms) among the sides within tolerance of the best."""
    rows = [{'vision_side': 224, 'accuracy': 0.900, 'total_ms': 10.0},
            {'vision_side': 336, 'accuracy': 0.905, 'total_ms': 20.0},
            {'vision_side': 448, 'accuracy': 0.950, 'total_ms': 40.0}]
    assert keep_side(rows, 0.06) == 224
    assert keep_side(rows, 0.01) == 448
    assert keep_side(rows[:2], 0.01) == 224


def test_cli_calibrate_compares_two_sides_in_one_report(qwen, tmp_path, capsys):
    """--vision-side 32,64: one row per side in report.json and the table; the kept one saved."""
    out = tmp_path / 'profile'
    scenes = qwen['root'] / 'scenes'
    code = main(['calibrate', '--model', str(qwen['model']), '--task',
                 str(scenes / 'tasks' / 'red_present.yaml'), '--data',
                 str(scenes / 'red_present.jsonl'), '--out', str(out), '--quantization', 'none',
                 '--max-layer', '1', '--folds', '3', '--repeats', '1', '--sizes', '4', '--k', '3',
                 '--no-ceiling', '--no-baseline', '--no-progress', '--vision-side', '32,64'])
    assert code == 0
    report = json.loads((out / 'report.json').read_text())
    compared = report['resolutions']
    rows = {row['vision_side']: row for row in compared['rows']}
    assert sorted(rows) == [32, 64]
    assert rows[32]['image_tokens'] == 4 and rows[64]['image_tokens'] == 16
    for row in rows.values():
        assert row['vision_ms'] > 0 and row['decoder_ms'] > 0 and 0 <= row['accuracy'] <= 1
        assert row['accuracy_std'] >= 0 and row['exit_layer'] in (0, 1)
    assert compared['kept'] == keep_side(compared['rows'], report['options']['tolerance'])
    assert Profile.load(out).image_size == (compared['kept'], compared['kept'])
    assert report['image_size'] == [compared['kept']] * 2
    printed = capsys.readouterr().out
    assert 'resolutions compared' in printed and '<- kept' in printed


def test_eval_runs_the_full_model_at_the_profile_size(qwen, monkeypatch):
    """`superneuron eval`'s first-token baseline sees images at the profile's resolution."""
    seen = []
    original = Engine.first_token_logits

    def spy(self, images, prompts):
        seen.append(self.processor.image_processor.size['longest_edge'])
        return original(self, images, prompts)

    monkeypatch.setattr(Engine, 'first_token_logits', spy)
    options = EvaluationOptions(quantization='none', methods=('restricted',), progress=False)
    result = evaluate(qwen['model'], qwen['profile_dir'], qwen['examples'][:3], options)
    assert result['image_size'] == [SIDE, SIDE] and seen == [SIDE * SIDE] * 4  # with warm-up
