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
The settings of one calibration, validated on construction, and how a caller follows it.

:class:`CalibrationOptions` holds the protocol's choices; :class:`CalibrationHooks` report
progress and cancel between steps; :func:`search_depth` is the deepest layer searched.
"""

import dataclasses
from pathlib import Path
import string
from typing import Any, Callable

import numpy as np
from superneuron_ros.errors import LayerRangeError, SuperneuronError
from superneuron_ros.method.crossval import SearchSettings
from superneuron_ros.method.probing import METRICS, SITES
from superneuron_ros.method.selection import READOUTS
from superneuron_ros.vlm.loading import LoadConfig

DEFAULT_PROMPT = '{question} Answer with one of: {options}.'


class CalibrationError(SuperneuronError, ValueError):
    """A calibration option is invalid, or the data cannot support the requested protocol."""


def _int_field(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise CalibrationError(f'{name} must be an integer >= {least}, got {value!r}')
    return int(value)


@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    """Settings of one calibration; validated on construction, errors name the field."""

    sites: tuple[str, ...] = SITES  # where candidate scalars are read
    max_layer: int | None = None  # deepest layer searched; None: every layer (up to a fixed exit)
    k: int = 9  # scalars in the vote readout
    sizes: tuple[int, ...] = (8, 16, 32)  # m compared for the linear readout (one: fixed m)
    readout: str = 'auto'  # 'auto' (the better held-out mean per layer), 'vote' or 'linear'
    folds: int = 5  # outer cross-validation folds
    repeats: int = 2  # repeats of the outer folds, each with its own shuffle
    rank_folds: int = 5  # inner folds ranking the 1-D classifiers
    exit_layer: int | str = 'auto'  # 'auto' or a layer index
    tolerance: float = 0.01  # exit: shallowest layer within this of the best mean score
    metric: str = 'accuracy'  # 'accuracy' or 'balanced' (for imbalanced sets)
    ceiling: bool = True  # also score the linear readout over every scalar of each layer
    min_anytime: int = 10  # out-of-fold answers an anytime threshold must keep at least
    prompt_template: str = DEFAULT_PROMPT  # fields: {question}, {options}
    quantization: str = 'nf4'
    device: str = 'auto'
    dtype: str = 'auto'
    quantize_modules: str = 'language'  # see superneuron_ros.vlm.config.QUANTIZED_MODULES
    vision_side: int | None = None  # bound of the processor's resize (Qwen, SmolVLM); None: as is
    seed: int = 0
    batch_size: int = 8
    baseline: bool = True  # also score the full model's own (restricted) answer: loads it all
    vision_only: bool = True  # also score the readouts on the image features alone
    progress: bool = True  # tqdm bars on the long steps

    def __post_init__(self) -> None:
        """Check every field; raise CalibrationError naming the bad one."""
        sites = (self.sites,) if isinstance(self.sites, str) else tuple(self.sites)
        unknown = [s for s in sites if s not in SITES]
        if not sites or unknown or len(set(sites)) != len(sites):
            raise CalibrationError(f'sites must be a non-empty selection of {SITES} without '
                                   f'repeats, got {list(sites)}')
        object.__setattr__(self, 'sites', tuple(s for s in SITES if s in sites))
        if self.max_layer is not None:
            _int_field('max_layer', self.max_layer, 0)
        _int_field('k', self.k, 1)
        sizes = tuple(_int_field('sizes', v, 1) for v in (self.sizes or ()))
        if not sizes:
            raise CalibrationError('sizes must list at least one m, e.g. (8, 16, 32)')
        object.__setattr__(self, 'sizes', tuple(sorted(set(sizes))))
        if self.readout not in READOUTS:
            raise CalibrationError(f'readout must be one of {READOUTS}, got {self.readout!r}')
        _int_field('folds', self.folds, 2)
        _int_field('repeats', self.repeats, 1)
        _int_field('rank_folds', self.rank_folds, 2)
        _int_field('min_anytime', self.min_anytime, 1)
        if isinstance(self.exit_layer, str):
            if self.exit_layer != 'auto':
                raise CalibrationError(f"exit_layer must be 'auto' or a layer index, got "
                                       f'{self.exit_layer!r}')
        else:
            _int_field('exit_layer', self.exit_layer, 0)
            if self.max_layer is not None and self.exit_layer > self.max_layer:
                raise CalibrationError(f'exit_layer {self.exit_layer} is deeper than max_layer '
                                       f'{self.max_layer}; raise max_layer or lower exit_layer')
        if not isinstance(self.tolerance, (int, float)) or not 0.0 <= self.tolerance < 1.0:
            raise CalibrationError(f'tolerance must lie in [0, 1) (an accuracy difference), got '
                                   f'{self.tolerance!r}')
        if self.metric not in METRICS:
            raise CalibrationError(f'metric must be one of {METRICS}, got {self.metric!r}')
        fields = {f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f}
        if 'question' not in fields or fields - {'question', 'options'}:
            raise CalibrationError('prompt_template must contain {question} and no field but '
                                   f'{{question}} and {{options}}, got {self.prompt_template!r}')
        _int_field('seed', self.seed, 0)
        _int_field('batch_size', self.batch_size, 1)
        self.vision_side is None or _int_field('vision_side', self.vision_side, 1)
        try:
            LoadConfig('.', quantization=self.quantization, device=self.device, dtype=self.dtype,
                       quantize_modules=self.quantize_modules)
        except ValueError as exc:
            raise CalibrationError(str(exc)) from None

    def settings(self) -> SearchSettings:
        """Return the search settings of the cross-validation."""
        return SearchSettings(self.sites, self.k, self.sizes, self.folds, self.repeats,
                              self.rank_folds, self.metric, self.seed, self.ceiling)

    def load_config(self, model_path: str | Path, exit_layer: int | None) -> LoadConfig:
        """Return the LoadConfig of the model, truncated at `exit_layer` (None: full)."""
        return LoadConfig(str(model_path), quantization=self.quantization, device=self.device,
                          dtype=self.dtype, exit_layer=exit_layer,
                          quantize_modules=self.quantize_modules)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as JSON data."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}


class CalibrationCancelled(SuperneuronError):
    """The caller cancelled a calibration (nothing was written)."""


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def _not_cancelled() -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class CalibrationHooks:
    """
    How a caller follows and stops a calibration; the defaults do neither.

    ``progress(stage, done, total)`` is called after each captured batch (``'capturing'``,
    images), after each layer of each cross-validation fold (``'searching'``, steps: layers x
    folds x repeats) and before the final fit (``'fitting'``). ``cancelled()`` is checked at the
    same points; when it returns True the calibration stops with CalibrationCancelled.
    """

    progress: Callable[[str, int, int], None] = _no_progress
    cancelled: Callable[[], bool] = _not_cancelled

    def step(self, stage: str, done: int, total: int) -> None:
        """Raise CalibrationCancelled when cancelled, else report progress."""
        if self.cancelled():
            raise CalibrationCancelled(f'the calibration was cancelled while {stage}')
        self.progress(stage, done, total)


def search_depth(options: CalibrationOptions, num_layers: int, model: str,
                 hint: str = '') -> int:
    """
    Return the deepest layer searched: max_layer, else the fixed exit layer, else the last one.

    Raises LayerRangeError when it (or the fixed exit layer) is not below `num_layers`; `hint`
    says how to get more layers (the node: load deeper).
    """
    fixed = None if options.exit_layer == 'auto' else int(options.exit_layer)
    deepest = options.max_layer if options.max_layer is not None else (
        fixed if fixed is not None else num_layers - 1)
    if not 0 <= max(deepest, fixed or 0) < num_layers:
        raise LayerRangeError(f'layer {max(deepest, fixed or 0)} is out of range: {model} has '
                              f'{num_layers} decoder layers (valid: 0..{num_layers - 1})'
                              + (f'; {hint}' if hint else ''))
    return deepest
