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
Teaching without ROS: the runtime's own model, the offline calibration's result, cancel, limits.

A tiny random LLaVA is loaded by a real Runtime (nf4, layers 0..2, no profile) and taught
yellow_present from generated scenes; the profile must equal the one ``superneuron calibrate``'s
function writes from the same folder, data and settings, load at once, and answer.
"""

import math

from calibrated_fixture import torch_threads
import numpy as np
import pytest
from superneuron_ros.errors import DataError, LayerRangeError
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.scenes import TASKS
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate
from superneuron_ros.method.calibration_options import CalibrationCancelled
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import load_image, load_labelled_set
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.runtime.teach import (load_teach_set, teach, teach_options, TeachError,
                                           TeachProgress)
from superneuron_ros.vlm.loading import LoadConfig

YELLOW = TASKS['yellow_present']
DEPTH = 3  # layers the runtime loads (0..2)
# Small search settings: a few seconds on one busy core.
FAST = {'k': 5, 'sizes': (4, 8), 'folds': 3, 'repeats': 1, 'rank_folds': 3, 'batch_size': 8}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Build a tiny model, 60 yellow_present scenes, and a Runtime loaded 3 layers deep."""
    root = tmp_path_factory.mktemp('teach')
    with torch_threads(1):
        model = build_model_folder(root / 'model', 'llava', seed=0)
        write_dataset(root / 'scenes', n=60, seed=3, size=32, tasks=[YELLOW.name])
        runtime = Runtime.load(LoadConfig(str(model), 'nf4', 'cpu'), [],
                               max_exit_layer=DEPTH - 1)
        try:
            yield {'root': root, 'model': model, 'runtime': runtime,
                   'examples': load_labelled_set(root / 'scenes' / 'yellow_present.jsonl',
                                                 YELLOW)}
        finally:
            runtime.close()


def _direct(runtime):
    """Return a `run` that calls fn(runtime) and counts the calls."""
    def run(fn):
        run.calls += 1
        return fn(runtime)
    run.calls = 0
    return run


def _without_created(profile: Profile) -> dict:
    return {k: v for k, v in profile.metadata().items() if k != 'created'}


def test_teach_equals_the_offline_calibration_and_loads_at_once(setup, tmp_path):
    """Same folder, data and settings: the same profile as calibrate(); it loads and answers."""
    runtime, examples = setup['runtime'], setup['examples']
    seen: list[TeachProgress] = []
    run = _direct(runtime)
    with torch_threads(1):
        outcome = teach(run, YELLOW, examples, tmp_path / 'profiles' / 'yellow_present',
                        progress=seen.append, **FAST)
        offline = calibrate(setup['model'], YELLOW, examples, teach_options(
            runtime.loaded.load_config, runtime.loaded_depth, **FAST))
    taught = Profile.load(outcome.profile_path)
    assert outcome.profile_path == tmp_path / 'profiles' / 'yellow_present'
    assert (outcome.profile_path / 'report.json').is_file()
    assert _without_created(taught) == _without_created(offline.profile)
    mine, theirs = taught.arrays(), offline.profile.arrays()
    assert set(mine) == set(theirs)
    assert all(np.array_equal(mine[name], theirs[name]) for name in mine)
    assert taught.fingerprint == offline.profile.fingerprint
    assert outcome.report['per_layer'] == offline.report['per_layer']
    assert outcome.exit_layer == offline.profile.exit_layer <= DEPTH - 1
    assert outcome.cv_accuracy == offline.profile.metrics['heldout_accuracy']
    assert outcome.cv_std == offline.profile.metrics['cv_std']
    assert outcome.num_examples == len(examples) and outcome.protocol == '1x3-fold ' \
        'cross-validation'
    # The node has no LM head: no number pretends to be the model's own accuracy.
    assert math.isnan(outcome.model_accuracy)
    assert '--methods restricted' in outcome.model_accuracy_note
    # One run() call per capture batch (plus a few for the prompt, depth and fingerprint).
    batches = math.ceil(len(examples) / FAST['batch_size'])
    assert batches < run.calls <= batches + 6
    stages = [state.stage for state in seen]
    assert stages[0] == 'capturing' and stages[-1] == 'writing'
    assert list(dict.fromkeys(stages)) == ['capturing', 'searching', 'fitting', 'writing']
    captured = [s for s in seen if s.stage == 'capturing']
    assert captured[-1].images_done == captured[-1].images_total == len(examples)
    searched = [s for s in seen if s.stage == 'searching']
    assert searched[-1].steps_done == searched[-1].steps_total == 3 * DEPTH
    assert all(s.layers_total == DEPTH for s in seen)
    # Loaded at once by the same runtime: it answers the new task.
    runtime.add_profiles([outcome.profile_path])
    try:
        image = load_image(examples[0].image_path)
        prediction = runtime.answer(image, [YELLOW.name]).predictions[0]
        assert prediction.label in YELLOW.labels and prediction.exit_layer <= DEPTH - 1
        with pytest.raises(TeachError, match='already loaded'):
            teach(run, YELLOW, examples, tmp_path / 'again', **FAST)
    finally:
        runtime.remove_tasks([YELLOW.name])


@pytest.mark.parametrize('stage', ['capturing', 'searching'])
def test_cancel_leaves_nothing_behind(setup, tmp_path, stage):
    """Cancelled between batches or between layers of the search: no folder, no temp folder."""
    calls = []

    def progress(state: TeachProgress) -> None:
        calls.append(state.stage)

    def cancelled() -> bool:
        return calls.count(stage) >= 2

    target = tmp_path / 'profiles' / 'yellow_present'
    with torch_threads(1), pytest.raises(CalibrationCancelled, match=stage):
        teach(_direct(setup['runtime']), YELLOW, setup['examples'], target, progress=progress,
              cancelled=cancelled, **FAST)
    assert not target.exists()
    assert not (tmp_path / 'profiles').exists() or not any((tmp_path / 'profiles').iterdir())
    assert 'writing' not in calls


def test_deeper_than_loaded_and_bad_sets_are_refused(setup, tmp_path):
    """A layer beyond the loaded depth, a reloaded model and bad datasets give clear errors."""
    runtime, examples = setup['runtime'], setup['examples']
    target = tmp_path / 'yellow_present'
    with pytest.raises(LayerRangeError, match=r'deeper than the layers the node loaded \(0\.\.2'):
        teach(_direct(runtime), YELLOW, examples, target, max_exit_layer=DEPTH, **FAST)
    assert not target.exists()

    class Other:  # a runtime object that differs from the one the teach started with
        def __getattr__(self, name):
            return getattr(runtime, name)
    runtimes = iter([runtime] * 4 + [Other()] * 50)  # two batches, then another model
    with torch_threads(1), pytest.raises(TeachError, match='loaded another model'):
        teach(lambda fn: fn(next(runtimes)), YELLOW, examples, target, **FAST)
    assert not target.exists()
    scenes = setup['root'] / 'scenes'
    task, found = load_teach_set(scenes, YELLOW.name)  # the task file in tasks/<task>.yaml
    assert task == YELLOW and len(found) == len(examples)
    with pytest.raises(DataError, match='does not exist'):
        load_teach_set(tmp_path / 'missing', YELLOW.name)
    with pytest.raises(DataError, match='both the question and the labels'):
        load_teach_set(scenes, YELLOW.name, question='Is it yellow?')
    with pytest.raises(DataError, match='not a label'):
        load_teach_set(scenes, YELLOW.name, 'Is there a yellow shape?', ['ja', 'nein'])
