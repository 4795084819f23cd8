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
Teaching at run time: calibrate a new task with the model a loaded Runtime already holds.

:func:`teach` runs the protocol of ``superneuron calibrate`` (the same function,
:func:`~superneuron_ros.method.calibrate.calibrate_from`) on the layers the runtime has loaded:
nothing is loaded or reloaded. Every model call goes through a `run` callable that the caller
supplies (the node passes ``ModelSlot.run``, which calls ``fn(runtime)`` under the model lock),
one capture batch at a time, so the node's answers interleave with the capture. A `cancelled`
flag is checked between batches and between layers of the search; a cancelled or failed teach
writes nothing. The profile and its report are written into a hidden temporary folder beside
the target and renamed into place (``Profile.save``): the target folder is complete or absent,
also after SIGINT.

The model's own answer (the restricted first-token baseline ``superneuron calibrate`` reports)
needs the LM head and every decoder layer, which a truncated runtime does not hold: the outcome
says so, with the offline command that measures it, instead of a number.
"""

import dataclasses
import os
from pathlib import Path
import time
from typing import Any, Callable, Sequence, TypeVar
import weakref

import numpy as np
from superneuron_ros.errors import DataError, LayerRangeError, SuperneuronError
from superneuron_ros.method.calibrate import calibrate_from, Wanted
from superneuron_ros.method.calibration_options import (CalibrationCancelled, CalibrationHooks,
                                                        CalibrationOptions, search_depth)
from superneuron_ros.method.resolutions import profile_image_size
from superneuron_ros.method.tasks import Example, load_labelled_set, TaskSpec
from superneuron_ros.vlm.fingerprint import ModelFingerprint
from superneuron_ros.vlm.loading import device_scope
import torch

T = TypeVar('T')
Run = Callable[[Callable[[Any], T]], T]  # run(fn) -> fn(runtime), e.g. under the model lock
STAGES = ('capturing', 'searching', 'fitting', 'writing')
# What a teach changes from `superneuron calibrate`'s defaults, to keep it short in a running node:
# one repeat of the folds (the final readouts are refitted on every example either way) and no
# ceiling (a report-only figure, the linear readout over every scalar of each layer).
TEACH_DEFAULTS = {'repeats': 1, 'ceiling': False, 'vision_only': False}
EVAL_COMMAND = ('superneuron eval --model MODEL --profile PROFILE --data SET.jsonl '
                '--methods restricted')
# After each capture batch the teach sleeps this long, off the model lock: a plain lock hands
# itself to no one, so this is when a waiting answer takes it (the calls interleave).
YIELD_S = 0.02


class TeachError(SuperneuronError):
    """A teach request cannot be carried out as asked; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class TeachProgress:
    """Where a teach stands; `steps` count layers x folds x repeats of the cross-validation."""

    stage: str  # one of STAGES
    images_done: int = 0
    images_total: int = 0
    layers_total: int = 0  # decoder layers searched (0..L)
    steps_done: int = 0
    steps_total: int = 0


@dataclasses.dataclass(frozen=True)
class TeachOutcome:
    """What a teach produced: the written profile and its figures."""

    profile_path: Path
    task: str
    exit_layer: int
    cv_accuracy: float  # mean over the cross-validation folds at the exit layer
    cv_std: float
    protocol: str  # e.g. '2x5-fold cross-validation'
    num_examples: int
    model_accuracy: float  # the model's own answer on the same images; NaN when not computed
    model_accuracy_note: str  # why it is NaN, and the command that measures it
    seconds: float
    report: dict


def no_baseline_reason(loaded_depth: int) -> str:
    """Return why the node cannot score the model's own answer, and what measures it."""
    return (f"not computed in the node: the model's own answer needs the LM head and every "
            f'decoder layer, and the node holds layers 0..{loaded_depth - 1} without the LM '
            f'head; measure it offline with `{EVAL_COMMAND}`')


class RuntimeSource:
    """
    The calibration's model source in a running node: the loaded Runtime, through `run`.

    Each call is one ``run(fn)``. A different runtime object in a later call (the node was
    reconfigured meanwhile) stops the teach with TeachError rather than mixing two models.
    """

    def __init__(self, run: Run, yield_s: float = YIELD_S) -> None:
        """Read the loaded model's load config, depth and tasks (in one call)."""
        self._run = run
        self.yield_s = yield_s
        self._runtime: Any = None
        self.load_config, depth, self.tasks, self.image_size = self.call(lambda runtime: (
            runtime.loaded.load_config, runtime.loaded_depth, dict(runtime.tasks),
            profile_image_size(list(runtime.profiles.values()))))
        self.loaded_depth = int(depth)
        self.folder = Path(self.load_config.model_path).expanduser()
        self.baseline_unavailable = no_baseline_reason(self.loaded_depth)

    def call(self, fn: Callable[[Any], T]) -> T:
        """Return ``fn(runtime)`` through `run`, checking it is still the same runtime."""
        def checked(runtime: Any) -> T:
            if self._runtime is None:
                self._runtime = weakref.ref(runtime)
            elif self._runtime() is not runtime:
                raise TeachError('the node loaded another model while teaching; nothing was '
                                 'written: teach again')
            return fn(runtime)
        return self._run(checked)

    def render_prompt(self, question: str) -> str:
        """Render a question through the loaded model's chat template."""
        return self.call(lambda runtime: runtime.engine.render_prompt(question))

    def capture(self, images: Sequence[np.ndarray], prompts: Sequence[str],
                wanted: Wanted) -> dict[tuple[int, str], torch.Tensor]:
        """Read `wanted` for one batch, in one `run` call."""
        def read(runtime: Any) -> dict[tuple[int, str], torch.Tensor]:
            with device_scope(runtime.loaded.device):  # this thread may not be the loader's
                return runtime.engine.capture(images, prompts, wanted)
        values = self.call(read)
        time.sleep(self.yield_s)
        return values

    def stage_times(self, examples: Sequence[Example], prompt: str, depth: int) -> None:
        """Time nothing: a teach keeps the model's lock for answers, not for timing."""
        return None

    def release(self) -> None:
        """Keep the model: it is the node's."""

    def fingerprint(self, layer: int) -> ModelFingerprint:
        """Return the loaded model's fingerprint for a profile exiting at `layer`."""
        return self.call(lambda runtime: runtime.model_fingerprint(layer))

    def baseline(self, task: TaskSpec, prompt: str,
                 examples: Sequence[Example]) -> dict[str, Any]:
        """Refuse: the truncated runtime has no LM head (see baseline_unavailable)."""
        raise DataError(self.baseline_unavailable)


def teach_options(load_config: Any, loaded_depth: int, max_exit_layer: int | None = None,
                  readout: str = 'auto', **overrides: Any) -> CalibrationOptions:
    """
    Return the calibration options of a teach.

    They are `superneuron calibrate`'s defaults but TEACH_DEFAULTS (one repeat, no ceiling, no
    vision-only row), with the loaded model's quantization, device and dtype, layers
    0..`max_exit_layer` (None or negative: every loaded layer), no baseline and no progress
    bars; `overrides` replace any field. The offline equivalent: ``superneuron calibrate
    --repeats 1 --no-ceiling --no-vision-only --max-layer L --no-baseline`` with the node's
    quantization.
    """
    if max_exit_layer is None or max_exit_layer < 0:
        max_exit_layer = loaded_depth - 1
    elif max_exit_layer >= loaded_depth:
        raise LayerRangeError(
            f'max_exit_layer {max_exit_layer} is deeper than the layers the node loaded '
            f'(0..{loaded_depth - 1}); ask for at most {loaded_depth - 1}, or raise the '
            "node's max_exit_layer parameter and configure it again")
    fields = {'max_layer': max_exit_layer, 'readout': readout or 'auto',
              'quantization': load_config.quantization, 'device': load_config.device,
              'dtype': load_config.dtype, 'quantize_modules': load_config.quantize_modules,
              'baseline': False, 'progress': False, **TEACH_DEFAULTS, **overrides}
    return CalibrationOptions(**fields)


def find_labelled_set(dataset: Path, task_name: str) -> tuple[Path, Path | None]:
    """
    Return the labelled set (JSONL) and the task file (or None) of a dataset path.

    `dataset` is a JSONL file, or a folder holding ``<task>.jsonl`` (or a single ``*.jsonl``);
    the task file is ``task.yaml``, ``<task>.yaml`` or ``tasks/<task>.yaml`` beside it.
    """
    if dataset.is_file():
        jsonl = dataset
    elif dataset.is_dir():
        sets = sorted(dataset.glob('*.jsonl'))
        named = dataset / f'{task_name}.jsonl'
        if named.is_file():
            jsonl = named
        elif len(sets) == 1:
            jsonl = sets[0]
        else:
            raise DataError(f'dataset folder {dataset} holds {len(sets)} labelled sets (*.jsonl) '
                            f'and no {task_name}.jsonl; name the JSONL file itself')
    else:
        raise DataError(f'dataset {dataset} does not exist; record frames with ~/record first, '
                        'or give a labelled set (JSONL) under data_dir')
    folder = jsonl.parent
    tasks = [folder / 'task.yaml', folder / f'{task_name}.yaml',
             folder / 'tasks' / f'{task_name}.yaml']
    return jsonl, next((path for path in tasks if path.is_file()), None)


def load_teach_set(dataset: Path, name: str, question: str = '',
                   labels: Sequence[str] = ()) -> tuple[TaskSpec, list[Example]]:
    """
    Return the task and its examples for a teach.

    The question and labels come from the request; when both are empty, from the dataset's task
    file (which ``~/record`` writes). DataError says what is missing or wrong.
    """
    if question and labels:
        task = TaskSpec(name=name, question=question, labels=tuple(labels))
    elif question or labels:
        raise DataError('give both the question and the labels (or neither, to take them from '
                        "the dataset's task file)")
    jsonl, task_file = find_labelled_set(Path(dataset), name)
    if not question:
        if task_file is None:
            raise DataError(f'no question and labels given and no task file beside {jsonl}; '
                            'give the question and the labels')
        task = TaskSpec.from_yaml(task_file)
        if task.name != name:
            raise DataError(f'the task file {task_file} defines task {task.name!r}, not '
                            f'{name!r}; give the question and the labels')
    return task, load_labelled_set(jsonl, task)


class _Progress:
    """Turns the calibration's (stage, done, total) calls into TeachProgress reports."""

    def __init__(self, report: Callable[[TeachProgress], None], layers: int) -> None:
        self.report = report
        self.state = TeachProgress('capturing', layers_total=layers)

    def __call__(self, stage: str, done: int, total: int) -> None:
        fields = ({'images_done': done, 'images_total': total} if stage == 'capturing' else
                  {'steps_done': done, 'steps_total': total} if stage == 'searching' else {})
        self.state = dataclasses.replace(self.state, stage=stage, **fields)
        self.report(self.state)


def teach(run: Run, task: TaskSpec, examples: Sequence[Example], target: str | os.PathLike,
          max_exit_layer: int | None = None, readout: str = 'auto',
          progress: Callable[[TeachProgress], None] = lambda state: None,
          cancelled: Callable[[], bool] = lambda: False, **overrides: Any) -> TeachOutcome:
    """
    Calibrate `task` on `examples` with the runtime behind `run`; write the profile to `target`.

    `overrides` replace calibration options (:func:`teach_options`). Raises
    CalibrationCancelled when `cancelled()` turned True (nothing written), TeachError when the
    task is already loaded or `target` exists, and the calibration's errors (DataError,
    LayerRangeError, ...).
    """
    started = time.perf_counter()
    target = Path(target)
    source = RuntimeSource(run)
    if task.name in source.tasks:
        raise TeachError(f'task {task.name!r} is already loaded (from '
                         f'{source.tasks[task.name].profile_path}); remove it from the profiles '
                         'parameter first, or teach it under another name')
    if target.exists():
        raise TeachError(f'{target} already exists; remove it or teach under another name')
    options = teach_options(source.load_config, source.loaded_depth, max_exit_layer, readout,
                            **overrides)
    deepest = search_depth(options, source.loaded_depth, 'the loaded model',
                           "raise the node's max_exit_layer parameter and configure it again")
    tracker = _Progress(progress, deepest + 1)
    result = calibrate_from(source, task, examples, options, deepest,
                            hooks=CalibrationHooks(tracker, cancelled))
    if cancelled():
        raise CalibrationCancelled('the teach was cancelled before writing; nothing was written')
    tracker('writing', 0, 1)
    path = result.save(target)  # atomic: a hidden temporary folder beside it, then renamed
    metrics = result.profile.metrics
    return TeachOutcome(
        profile_path=path, task=task.name, exit_layer=result.profile.exit_layer,
        cv_accuracy=float(metrics['heldout_accuracy']), cv_std=float(metrics['cv_std']),
        protocol=str(metrics['protocol']), num_examples=int(metrics['num_examples']),
        model_accuracy=float('nan'), model_accuracy_note=str(result.report['baseline_skipped']),
        seconds=time.perf_counter() - started, report=result.report)
