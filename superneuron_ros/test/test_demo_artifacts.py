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
The embedded demo's shipped profiles: they load on the shipped model and really answer.

These check the committed artefacts (superneuron_ros/data), not the code that made them: the
profiles' fingerprints match the shipped model in nf4, their answers on fresh scenes (a seed the
calibration never saw) are better than chance by a binomial lower bound and consistent with the
accuracy their reports give, and calibrating the shipped model again on fresh scenes finds super
neurons for red presence at 0.9 or better.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from superneuron_ros.cli.demo import camera_side
from superneuron_ros.lab import scenes
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.method.tasks import Example
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.loading import LoadConfig
import torch

DATA = Path(__file__).resolve().parents[1] / 'superneuron_ros' / 'data'
MODEL = DATA / 'demo_model'
PROFILES = DATA / 'demo_profiles'


@pytest.fixture(scope='module')
def runtime() -> Runtime:
    """Load the shipped model in nf4 with every shipped profile, as `make demo` does."""
    torch.set_num_threads(1)
    return Runtime.load(LoadConfig(str(MODEL), quantization='nf4', device='cpu'), [PROFILES])


def _fresh_scene(task: str, label: str, rng: np.random.Generator) -> np.ndarray:
    """Draw a varied scene (as the model was trained and calibrated on) at the model's side."""
    side = camera_side(str(MODEL))
    return scenes.render(scenes.sample_scene_for(task, label, rng, varied=True), (side, side))


def test_shipped_model_is_the_demo_preset_with_its_evaluation():
    """12+ decoder layers, 96+ px, at most 40 MB, and the held-out greedy accuracy reported."""
    config = json.loads((MODEL / 'config.json').read_text(encoding='utf-8'))
    assert config['text_config']['num_hidden_layers'] >= 12
    assert config['vision_config']['image_size'] >= 96 and camera_side(str(MODEL)) >= 96
    assert sum(p.stat().st_size for p in MODEL.iterdir()) <= 40e6
    report = json.loads((MODEL / 'training_report.json').read_text(encoding='utf-8'))
    assert set(report['per_task']) == {'seen', 'unseen', 'shifted'}
    for condition in report['per_task'].values():
        assert set(condition) == set(scenes.TASKS)
        for entry in condition.values():
            low, high = entry['wilson95']
            assert entry['n'] >= 100 and low <= entry['accuracy'] <= high


def test_every_shipped_profile_loads_on_the_shipped_model(runtime):
    """Fingerprints match (same weights, same quantization); the model is cut at the exit."""
    names = {Profile.load(path).task.name for path in find_profiles([PROFILES])}
    assert names == set(runtime.tasks) and len(names) >= 3
    assert runtime.exit_layer == max(info.exit_layer for info in runtime.tasks.values())
    assert runtime.engine.num_loaded_layers == runtime.exit_layer + 1
    assert runtime.selftest.ok


def _wilson(hits: int, n: int, z: float) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion (z: the normal quantile)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize('task', ['red_present', 'blue_present', 'shape_colour', 'shape_count',
                                  'red_left_of_blue', 'shape_in_left_half'])
def test_shipped_profiles_answer_fresh_scenes(runtime, task):
    """
    On 60 fresh balanced scenes, the answers beat chance and agree with the reported accuracy.

    Two-sided 99% Wilson bounds (z = 2.58): the lower one must exceed chance (one over the
    number of labels), and the interval must overlap that of the report's cross-validated
    accuracy (itself measured on `num_examples` images, so a reported 1.0 with one miss here is
    no contradiction).
    """
    rng = np.random.default_rng(12345)
    labels = scenes.TASKS[task].labels
    truth = [labels[i % len(labels)] for i in range(60)]
    hits = sum(runtime.answer(_fresh_scene(task, label, rng), [task]).predictions[0].label ==
               label for label in truth)
    low, high = _wilson(hits, len(truth), 2.58)
    assert low > 1.0 / len(labels), f'{hits}/{len(truth)} is not better than chance'
    reported = runtime.tasks[task].calibration_accuracy
    metrics = Profile.load(runtime.tasks[task].profile_path).metrics
    n_report = int(metrics.get('num_examples', metrics.get('num_heldout')))  # format 2, format 1
    reported_low, _ = _wilson(round(reported * n_report), n_report, 2.58)
    assert high >= reported_low, \
        f'{hits}/{len(truth)} falls short of the reported accuracy {reported:.3f} (n={n_report})'


def test_calibration_on_the_shipped_model_finds_red_presence_at_090(tmp_path):
    """A trained model carries the answer: its super neurons reach 0.9 held-out or better."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(2024)
    task = scenes.TASKS['red_present']
    examples = []
    for i in range(240):
        label = task.labels[i % 2]
        path = tmp_path / f'{i}.png'
        cv2.imwrite(str(path), cv2.cvtColor(_fresh_scene('red_present', label, rng),
                                            cv2.COLOR_RGB2BGR))
        examples.append(Example(path, task.name, task.question, label, task.label_index(label)))
    result = calibrate(str(MODEL), task, examples, CalibrationOptions(
        quantization='none', baseline=False, progress=False, prompt_template='{question}',
        repeats=1, ceiling=False))
    assert result.profile.metrics['heldout_accuracy'] >= 0.9
