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
A tiny model, generated scenes and a calibrated red_present profile, for any test to use.

``build_calibrated(root)`` writes, under ``root``: ``model/`` (a tiny random LLaVA from the zoo),
``scenes/`` (``tasks/red_present.yaml``, ``red_present.jsonl``, ``images/``) and
``profiles/red_present/`` (the profile with report.json and report.png), and returns their paths.
The session fixture ``calibrated_red_present`` builds it once per test session; a test module
gets it with ``pytest_plugins = ['calibrated_fixture']`` (importing the fixture by name instead
makes flake8 report F811 at every test that takes it).

A random network carries colour only weakly: on these scenes its best ensembles reach a held-out
accuracy of about 0.75 (the linear probe on every scalar about 0.8), so tests should ask for
clearly better than chance, not for a trained model's accuracy.
"""

from contextlib import contextmanager
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest
from superneuron_ros.lab.report import plot_calibration, REPORT_PNG
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.tasks import load_labelled_set, TaskSpec
import torch


@dataclasses.dataclass(frozen=True)
class CalibratedSetup:
    """Paths and results of :func:`build_calibrated`."""

    model_dir: Path
    scenes_dir: Path
    task_file: Path
    data_file: Path
    profiles_dir: Path  # a folder of profile folders (what the node's `profiles` takes)
    profile_dir: Path  # profiles_dir / task name
    task: TaskSpec
    report: dict[str, Any]
    quantization: str


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch on `count` CPU threads inside the block (tiny models run faster on one)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_calibrated(root: str | Path, *, task_name: str = 'red_present', n: int = 400,
                     size: int = 32, model_seed: int = 0, scene_seed: int = 0,
                     quantization: str = 'none', model_dir: Path | None = None,
                     **options: Any) -> CalibratedSetup:
    """
    Build (or reuse `model_dir`), write scenes and calibrate a profile of `task_name`.

    `options` override :class:`CalibrationOptions` fields (the baseline and progress bars are
    off unless asked for). Takes a few seconds on one CPU core.
    """
    root = Path(root)
    with torch_threads(1):
        if model_dir is None:
            model_dir = build_model_folder(root / 'model', 'llava', seed=model_seed)
        scenes_dir = root / 'scenes'
        write_dataset(scenes_dir, n=n, seed=scene_seed, size=size, tasks=[task_name])
        task_file = scenes_dir / 'tasks' / f'{task_name}.yaml'
        data_file = scenes_dir / f'{task_name}.jsonl'
        task = TaskSpec.from_yaml(task_file)
        settings = {'quantization': quantization, 'baseline': False, 'progress': False,
                    **options}
        result = calibrate(model_dir, task, load_labelled_set(data_file, task),
                           CalibrationOptions(**settings))
        profiles_dir = root / 'profiles'
        profile_dir = result.save(profiles_dir / task_name, overwrite=True)
        plot_calibration(result.report, profile_dir / REPORT_PNG)
    return CalibratedSetup(model_dir=Path(model_dir), scenes_dir=scenes_dir, task_file=task_file,
                           data_file=data_file, profiles_dir=profiles_dir,
                           profile_dir=profile_dir, task=task, report=result.report,
                           quantization=quantization)


@pytest.fixture(scope='session')
def calibrated_red_present(tmp_path_factory: pytest.TempPathFactory) -> CalibratedSetup:
    """Return a tiny LLaVA (seed 0) with a red_present profile calibrated on 400 scenes."""
    return build_calibrated(tmp_path_factory.mktemp('calibrated_red_present'))
