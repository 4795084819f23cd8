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
The runtime: the facade the ROS node calls. Profiles plus one truncated model give answers.

A :class:`Runtime` loads every profile, loads the model once, truncated at the deepest exit layer
among them, checks each profile against the model's fingerprint, runs the bitsandbytes self-test,
and answers any set of loaded tasks about one image in one pass: the processor and the vision
tower run once, the prompts' shared prefix is computed once, and the decoder runs only as deep as
the tasks asked in that call need, each task answering at its first confident readout
(:mod:`superneuron_ros.runtime.plan`).
"""

from dataclasses import dataclass
import gc
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from superneuron_ros.errors import ProfileError, UnknownTaskError
from superneuron_ros.method.classifier import Prediction, SuperNeuronClassifier
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.runtime.plan import AnytimeExit, CallPlan
from superneuron_ros.vlm.engine import Engine, StageTimes
from superneuron_ros.vlm.fingerprint import model_fingerprint
from superneuron_ros.vlm.loading import (load_model, LoadConfig, LoadedModel, release_memory,
                                         with_exit_layer)
from superneuron_ros.vlm.selftest import run_selftest, SelfTestResult

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskInfo:
    """What a client can know about a loaded task."""

    name: str
    question: str
    labels: tuple[str, ...]
    exit_layer: int
    num_neurons: int
    calibration_accuracy: float
    yes_index: int | None  # index of 'yes' for yes/no tasks, else None
    profile_path: str


@dataclass(frozen=True)
class RuntimeResult:
    """Answers to the tasks asked about one image, in the order asked, with stage timings."""

    predictions: tuple[Prediction, ...]  # each with the exit layer actually used
    times: StageTimes
    layers_run: int = 0  # decoder layers actually run in the call


PLAN_CACHE_SIZE = 64  # task lists whose read plans are kept


class Runtime:
    """Loaded profiles and the truncated model they need; thread-compatible, not thread-safe."""

    def __init__(self, loaded: LoadedModel, profiles: Sequence[Profile],
                 paths: Sequence[Path], selftest: SelfTestResult) -> None:
        """Wrap an already loaded model and checked profiles (use :meth:`load`)."""
        self.loaded = loaded
        self.engine = Engine(loaded)
        self.selftest = selftest
        self.profiles = {profile.task.name: profile for profile in profiles}
        self.classifiers = {name: SuperNeuronClassifier(p) for name, p in self.profiles.items()}
        self.tasks = {
            profile.task.name: TaskInfo(
                name=profile.task.name, question=profile.task.question,
                labels=tuple(profile.task.labels), exit_layer=profile.exit_layer,
                num_neurons=len(profile.index),
                calibration_accuracy=float(profile.metrics.get('heldout_accuracy', float('nan'))),
                yes_index=profile.task.yes_index, profile_path=str(path))
            for profile, path in zip(profiles, paths)}
        self._plans: dict[tuple[str, ...], CallPlan] = {}

    @classmethod
    def load(cls, load_config: LoadConfig, profile_paths: Sequence[str | Path]) -> 'Runtime':
        """
        Load profiles (dirs or folders of dirs) and the model truncated at their deepest layer.

        Raises ProfileError for missing, corrupt or duplicate profiles, ProfileMismatchError for a
        profile made for another model, and the loading errors of :func:`load_model`.
        """
        paths = find_profiles(profile_paths)
        if not paths:
            raise ProfileError(f'no profiles found in {list(map(str, profile_paths))}; calibrate '
                               'one with `superneuron calibrate`')
        profiles = [Profile.load(path) for path in paths]
        names = [p.task.name for p in profiles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ProfileError(f'several profiles define task(s) {duplicates}; keep one each')
        deepest = max(p.exit_layer for p in profiles)
        loaded = load_model(with_exit_layer(load_config, deepest))
        try:
            folder = Path(load_config.model_path).expanduser()
            by_layer = {}
            for profile in profiles:
                layer = profile.fingerprint.hash_layer
                if layer not in by_layer:
                    by_layer[layer] = model_fingerprint(folder, loaded.config,
                                                        load_config.quantization, layer)
                profile.check_compatible(by_layer[layer])
            selftest = run_selftest(load_config.quantization, loaded.device, loaded.dtype)
        except Exception:
            loaded.model = None  # drop the weights now; the caller only gets the error
            gc.collect()
            raise
        LOG.info('runtime ready: %d task(s) %s, exit layer %d, %s; %s', len(profiles), names,
                 deepest, load_config.quantization, selftest.message)
        return cls(loaded, profiles, paths, selftest)

    @property
    def exit_layer(self) -> int:
        """Return the deepest exit layer among the loaded profiles (loaded depth minus one)."""
        return self.engine.num_loaded_layers - 1

    def plan(self, task_names: Sequence[str]) -> CallPlan:
        """Return the read plan of a call asking `task_names` (kept for the next such call)."""
        key = tuple(task_names)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[key] = CallPlan(self.classifiers, key, self.loaded.device)
        return plan

    def answer(self, image: np.ndarray, task_names: Sequence[str]) -> RuntimeResult:
        """
        Answer `task_names` about one RGB uint8 image in one pass.

        The decoder runs only to the deepest exit layer among the asked tasks, and stops sooner
        when every task has answered at a confident readout. ``layers_run`` says how deep it ran.
        """
        unknown = [name for name in task_names if name not in self.profiles]
        if unknown or not task_names:
            raise UnknownTaskError(
                f'unknown task(s) {unknown}; loaded tasks: {sorted(self.profiles)}'
                if unknown else 'no task asked; loaded tasks: ' + ', '.join(sorted(self.profiles)))
        plan = self.plan(task_names)
        anytime = AnytimeExit(plan, self.classifiers)
        prompts = [self.profiles[name].prompt for name in plan.names]
        shared = self.engine.capture_shared(image, prompts, plan.sites, depth=plan.depth,
                                            watch={layer: anytime for layer in plan.readouts})
        classify_ms = 1e3 * anytime.seconds
        times = shared.times
        return RuntimeResult(anytime.predictions(), StageTimes(
            times.preprocess_ms, times.vision_ms, times.decoder_ms - classify_ms, classify_ms),
            shared.layers_run)

    def close(self) -> None:
        """Release the model and free its (GPU) memory."""
        device = self.loaded.device
        self.engine = None
        self.loaded = None
        release_memory(device)
