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

``max_exit_layer`` loads the model deeper than its profiles need, and profiles are added and
removed while it is loaded (:meth:`Runtime.prepare_change` checks a change exactly as a load
checks its profiles, :meth:`Runtime.commit` applies it at once), as long as each exit layer lies
within the loaded depth.
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


def _task_info(profile: Profile, path: Path) -> TaskInfo:
    return TaskInfo(
        name=profile.task.name, question=profile.task.question,
        labels=tuple(profile.task.labels), exit_layer=profile.exit_layer,
        num_neurons=len(profile.index),
        calibration_accuracy=float(profile.metrics.get('heldout_accuracy', float('nan'))),
        yes_index=profile.task.yes_index, profile_path=str(path))


def loaded_fingerprint(loaded: LoadedModel, layer: int) -> ModelFingerprint:
    """
    Return the fingerprint of a loaded model for profiles exiting at `layer`.

    The same call as `superneuron calibrate` makes: the model folder, the full model's config,
    the quantization and which modules it covers, from the load config.
    """
    config = loaded.load_config
    return model_fingerprint(Path(config.model_path).expanduser(), loaded.config,
                             config.quantization, layer, config.quantized_modules)


def _fingerprint_for(loaded: LoadedModel, layer: int,
                     cache: dict[int, ModelFingerprint]) -> ModelFingerprint:
    if layer not in cache:
        cache[layer] = loaded_fingerprint(loaded, layer)
    return cache[layer]


def _check_loadable(profile: Profile, loaded: LoadedModel,
                    fingerprints: dict[int, ModelFingerprint]) -> list[str]:
    """Check one profile against a loaded model (fingerprint, prompt); return its warnings."""
    fingerprint = _fingerprint_for(loaded, profile.fingerprint.hash_layer, fingerprints)
    warnings = _check_profile(profile, fingerprint, loaded.load_config)
    _check_prompt(profile, loaded.processor)
    return warnings


@dataclass(frozen=True)
class ProfileChange:
    """Checked profiles to add and task names to remove (:meth:`Runtime.prepare_change`)."""

    profiles: tuple[Profile, ...]
    paths: tuple[Path, ...]
    remove: tuple[str, ...]
    warnings: tuple[str, ...]

    def tasks_after(self, loaded: Sequence[str]) -> list[str]:
        """Return the task names loaded once the change is applied to `loaded`."""
        return [n for n in loaded if n not in self.remove] + [p.task.name for p in self.profiles]


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
        self.tasks = {profile.task.name: _task_info(profile, path)
                      for profile, path in zip(profiles, paths)}
        self._plans: dict[tuple[str, ...], CallPlan] = {}
        self._fingerprints: dict[int, ModelFingerprint] = {}  # by hash layer

    @classmethod
    def load(cls, load_config: LoadConfig, profile_paths: Sequence[str | Path],
             max_exit_layer: int | None = None) -> 'Runtime':
        """
        Load profiles (dirs or folders of dirs) and the model truncated at their deepest layer.

        With ``max_exit_layer`` >= 0 the model is loaded at least that deep (room for profiles
        added later, see :meth:`add_profiles`), and `profile_paths` may be empty; None or a
        negative value: exactly as deep as the deepest profile.

        Raises ProfileError for missing, corrupt or duplicate profiles, ProfileMismatchError for a
        profile made for another model, and the loading errors of :func:`load_model`.
        """
        room = max_exit_layer if max_exit_layer is not None and max_exit_layer >= 0 else None
        paths = find_profiles(profile_paths) if profile_paths or room is None else []
        if not paths and room is None:
            raise ProfileError(f'no profiles found in {list(map(str, profile_paths))}; calibrate '
                               'one with `superneuron calibrate`, or set max_exit_layer to load '
                               'the model without profiles')
        profiles = [Profile.load(path) for path in paths]
        names = [p.task.name for p in profiles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ProfileError(f'several profiles define task(s) {duplicates}; keep one each')
        deepest = max([p.exit_layer for p in profiles] + ([room] if room is not None else []))
        loaded = load_model(with_exit_layer(load_config, deepest))
        warnings: list[str] = []
        try:
            fingerprints: dict[int, ModelFingerprint] = {}
            for profile in profiles:
                warnings += _check_loadable(profile, loaded, fingerprints)
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
        runtime = cls(loaded, profiles, paths, selftest, warnings)
        runtime._fingerprints.update(fingerprints)
        return runtime

    @property
    def loaded_depth(self) -> int:
        """Return the number of decoder layers loaded (the deepest usable exit layer + 1)."""
        return self.engine.num_loaded_layers

    @property
    def exit_layer(self) -> int:
        """Return the deepest layer loaded: the deepest exit layer a profile may use."""
        return self.engine.num_loaded_layers - 1

    def model_fingerprint(self, layer: int) -> ModelFingerprint:
        """
        Return the loaded model's fingerprint for a profile exiting at `layer`.

        It is the one `superneuron calibrate` records for the same model folder, quantization
        and exit layer (both call :func:`~superneuron_ros.vlm.fingerprint.model_fingerprint`
        through :func:`loaded_fingerprint`), so a profile calibrated inside the node loads
        everywhere the offline one would.
        """
        return _fingerprint_for(self.loaded, layer, self._fingerprints)

    def prepare_change(self, add: Sequence[str | Path] = (),
                       remove: Sequence[str] = ()) -> ProfileChange:
        """
        Load and check the profiles in `add` and the task names in `remove`; change nothing.

        Each added profile is checked exactly as :meth:`load` checks one (fingerprint with the
        quantization rules, prompt placeholder); a task already loaded and not removed, a task
        defined twice, or a profile needing a layer beyond the loaded depth raise ProfileError;
        an unknown name in `remove` raises UnknownTaskError.
        """
        unknown = [name for name in remove if name not in self.profiles]
        if unknown:
            raise UnknownTaskError(f'cannot remove task(s) {unknown}: not loaded (loaded: '
                                   f'{sorted(self.profiles)})')
        paths = find_profiles(add) if add else []
        profiles = [Profile.load(path) for path in paths]
        names = [p.task.name for p in profiles]
        kept = set(self.profiles) - set(remove)
        repeated = sorted({n for n in names if names.count(n) > 1 or n in kept})
        if repeated:
            raise ProfileError(f'task(s) {repeated} would be defined twice (already loaded, or '
                               'by several of the new profiles); remove the loaded one first '
                               'or keep one profile per task')
        warnings: list[str] = []
        for profile, path in zip(profiles, paths):
            if profile.exit_layer > self.exit_layer:
                raise ProfileError(
                    f'profile {profile.name!r} ({path}) needs decoder layer '
                    f'{profile.exit_layer}, but the node loaded only {self.loaded_depth} '
                    f'layer(s) (0..{self.exit_layer}); set max_exit_layer >= '
                    f'{profile.exit_layer} and reconfigure (cleanup + configure)')
            warnings += _check_loadable(profile, self.loaded, self._fingerprints)
        return ProfileChange(tuple(profiles), tuple(paths), tuple(dict.fromkeys(remove)),
                             tuple(warnings))

    def commit(self, change: ProfileChange) -> list[TaskInfo]:
        """Apply a change from :meth:`prepare_change` at once; return the added tasks."""
        classifiers = {p.task.name: SuperNeuronClassifier(p) for p in change.profiles}
        added = [_task_info(p, path) for p, path in zip(change.profiles, change.paths)]
        gone = set(change.remove)
        # New dicts, not edits: readers in other threads (ModelSlot.tasks) see one or the other.
        self.profiles = {**{n: p for n, p in self.profiles.items() if n not in gone},
                         **{p.task.name: p for p in change.profiles}}
        self.classifiers = {**{n: c for n, c in self.classifiers.items() if n not in gone},
                            **classifiers}
        self.tasks = {**{n: t for n, t in self.tasks.items() if n not in gone},
                      **{t.name: t for t in added}}
        removed = tuple(f'profile {name!r} ' for name in gone)  # _check_profile's warnings
        self.warnings = tuple(w for w in self.warnings
                              if not w.startswith(removed)) + change.warnings
        self._plans = {}
        for warning in change.warnings:
            LOG.warning('%s', warning)
        LOG.info('tasks now %s (added %s, removed %s)', list(self.tasks),
                 [t.name for t in added], list(change.remove))
        return added

    def add_profiles(self, paths: Sequence[str | Path]) -> list[TaskInfo]:
        """
        Add the profiles in `paths` (as :meth:`load` finds them) without reloading the model.

        All or nothing: on any error (see :meth:`prepare_change`) nothing is added.
        """
        if not paths:
            raise ProfileError('no profile paths given; pass profile folders made by '
                               '`superneuron calibrate`')
        return self.commit(self.prepare_change(add=paths))

    def remove_tasks(self, names: Sequence[str]) -> None:
        """Remove loaded tasks; UnknownTaskError (and nothing removed) if one is not loaded."""
        self.commit(self.prepare_change(remove=names))

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
