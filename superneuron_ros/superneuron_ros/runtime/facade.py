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
among them, checks each profile against the model's fingerprint, runs the quantization self-test
(a failure fails the load unless the load config accepts it), and answers any set of loaded
tasks about one image in one pass: the processor and the vision tower run once, the prompts'
shared prefix is computed once, and the decoder runs only as deep as the tasks asked in that call
need, each task answering at its first confident readout (:mod:`superneuron_ros.runtime.plan`).
"""

from dataclasses import dataclass
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from superneuron_ros.errors import ProfileError, ProfileMismatchError, QuantizationError
from superneuron_ros.errors import UnknownTaskError
from superneuron_ros.method.classifier import Prediction, SuperNeuronClassifier
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.method.resolutions import apply_profile_image_size
from superneuron_ros.runtime.plan import AnytimeExit, CallPlan
from superneuron_ros.vlm.engine import Engine, StageTimes
from superneuron_ros.vlm.fingerprint import model_fingerprint, ModelFingerprint
from superneuron_ros.vlm.loading import device_scope, load_model, LoadConfig, LoadedModel
from superneuron_ros.vlm.loading import release_memory, with_exit_layer
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


def _check_prompt(profile: Profile, processor: object) -> None:
    """
    Refuse a profile whose prompt lacks the processor's image placeholder (ProfileError).

    Without it the image never reaches the decoder, and every answer would fail later.
    """
    placeholder = getattr(processor, 'image_token', None)
    if isinstance(placeholder, str) and placeholder and placeholder not in profile.prompt:
        raise ProfileError(f'profile {profile.name!r}: its prompt {profile.prompt!r} lacks the '
                           f"model's image placeholder {placeholder!r}, so the image would never "
                           'reach the model; recalibrate with `superneuron calibrate` (it renders '
                           'the prompt through the chat template)')


def _check_profile(profile: Profile, fingerprint: ModelFingerprint,
                   load_config: LoadConfig) -> list[str]:
    """
    Check a profile against the loaded model's fingerprint; return the overrides in force.

    A profile calibrated under another quantization is refused (ProfileMismatchError) unless
    ``load_config.allow_quantization_mismatch``; any other difference is always refused.
    """
    differences = profile.fingerprint.quantization_differences(fingerprint)
    if not differences:
        profile.check_compatible(fingerprint)
        return []
    if not load_config.allow_quantization_mismatch:
        try:
            profile.check_compatible(fingerprint)
        except ProfileMismatchError as exc:
            if len(differences) == len(profile.fingerprint.differences(fingerprint)):
                raise ProfileMismatchError(
                    f'{exc}. Only the quantization differs: load with quantization '
                    f'{profile.fingerprint.quantization!r} and quantize_modules '
                    f'{profile.fingerprint.quantized_modules!r}, or set '
                    'allow_quantization_mismatch to run it anyway (measure the difference '
                    'with `superneuron eval --quantization ...` first)') from None
            raise
    profile.check_compatible(fingerprint.with_quantization_of(profile.fingerprint))
    return [f'profile {profile.name!r} was calibrated under another quantization '
            f'({"; ".join(differences)}; calibrated vs loaded) and runs because '
            'allow_quantization_mismatch is set: its accuracy is not the calibrated one; '
            'measure it with `superneuron eval --quantization ...` or recalibrate']


class Runtime:
    """Loaded profiles and the truncated model they need; thread-compatible, not thread-safe."""

    def __init__(self, loaded: LoadedModel, profiles: Sequence[Profile],
                 paths: Sequence[Path], selftest: SelfTestResult,
                 warnings: Sequence[str] = ()) -> None:
        """Wrap an already loaded model and checked profiles (use :meth:`load`)."""
        self.loaded = loaded
        self.engine = Engine(loaded)
        self.selftest = selftest
        # Start-up checks the user overrode (failed self-test, quantization mismatch): reported
        # in the node's diagnostics for as long as this runtime answers.
        self.warnings = tuple(warnings)
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
        warnings: list[str] = []
        try:
            apply_profile_image_size(loaded, profiles)  # the resolution they were calibrated at
            folder = Path(load_config.model_path).expanduser()
            by_layer = {}
            for profile in profiles:
                layer = profile.fingerprint.hash_layer
                if layer not in by_layer:
                    by_layer[layer] = model_fingerprint(folder, loaded.config,
                                                        load_config.quantization, layer,
                                                        load_config.quantized_modules)
                warnings += _check_profile(profile, by_layer[layer], load_config)
                _check_prompt(profile, loaded.processor)
            selftest = run_selftest(load_config.quantization, loaded.device, loaded.dtype)
            if not selftest.ok:
                if not load_config.accept_failed_selftest:
                    raise QuantizationError(
                        f'the {load_config.quantization} self-test failed, so answers would be '
                        f'computed with a broken kernel: {selftest.message}. Use another '
                        'quantization (e.g. "torchao-int4" where bitsandbytes fails, or "none"), '
                        'or set accept_failed_selftest to serve anyway')
                warnings.append(f'serving although the quantization self-test failed '
                                f'(accept_failed_selftest): {selftest.message}')
        except Exception:
            loaded.model = None  # drop the weights now; the caller only gets the error
            release_memory(loaded.device)
            raise
        for warning in warnings:
            LOG.warning('%s', warning)
        LOG.info('runtime ready: %d task(s) %s, exit layer %d, %s; %s', len(profiles), names,
                 deepest, load_config.quantization, selftest.message)
        return cls(loaded, profiles, paths, selftest, warnings)

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
        with device_scope(self.loaded.device):  # the calling thread may not be the loader's
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
