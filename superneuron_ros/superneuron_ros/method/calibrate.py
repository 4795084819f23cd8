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
Calibration: find the Super Neurons of a task, choose the readouts and exit layer, write a profile.

The protocol:

1. One pass of a model truncated at the deepest searched layer reads every scalar of the chosen
   sites at the first-generated-token position for every example, kept in float32 (early-layer
   scalars vary by about 1e-3 of their magnitude there: float16 would erase them).
2. Repeated stratified k-fold cross-validation (:mod:`superneuron_ros.method.crossval`) scores,
   at every layer L, the vote of the top-k 1-D classifiers and the linear readout over the top m
   ranked scalars of layers 0..L (m and L2 by inner cross-validation), plus the ceiling (the
   linear readout over every scalar of layer L); ranking and choices use training folds only.
3. :mod:`superneuron_ros.method.selection` picks per layer the readout with the better mean,
   the exit layer (the shallowest within ``tolerance`` of the best mean), the temperature or
   vote table that makes scores probabilities, and the anytime thresholds of earlier layers.
4. The readouts of the anytime layers and the exit layer are refitted on every example; they
   form the profile. An optional test set is then answered once by that profile.
"""

import dataclasses
import logging
from pathlib import Path
import resource
import string
import time
from typing import Any, Sequence

import numpy as np
from superneuron_ros.errors import DataError, LayerRangeError, SuperneuronError
from superneuron_ros.jsonio import write_json
from superneuron_ros.method.baseline import restricted_baseline
from superneuron_ros.method.crossval import (cross_validate, fit_layer_readouts, OutOfFold,
                                             SearchSettings)
from superneuron_ros.method.linear import one_blas_thread
from superneuron_ros.method.probing import METRICS, SITES
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.readouts import Readout
from superneuron_ros.method.selection import READOUTS, select, Selection
from superneuron_ros.method.stage_timing import time_stages
from superneuron_ros.method.tasks import Example, load_image, TaskSpec
from superneuron_ros.vlm.capture import VISION
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.fingerprint import model_fingerprint
from superneuron_ros.vlm.loading import (check_model_folder, load_model, LoadConfig, read_config,
                                         release_memory)
from superneuron_ros.vlm.vision_side import apply_vision_side
import torch
from tqdm import tqdm

REPORT_JSON = 'report.json'  # the calibration report, saved beside the profile
LOG = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """The calibrated profile and the report of the search (JSON data)."""

    profile: Profile
    report: dict[str, Any]

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """
        Write the profile folder plus report.json in it; return the folder.

        The plot of the report (report.png) is the lab's: ``superneuron calibrate`` adds it.
        """
        path = self.profile.save(directory, overwrite=overwrite)
        write_json(self.report, path / REPORT_JSON)
        return path


def render_question(task: TaskSpec, template: str = DEFAULT_PROMPT) -> str:
    """Return the question text put to the model: the task question and its options."""
    return template.format(question=task.question, options=', '.join(task.labels))


def _check_data(task: TaskSpec, examples: Sequence[Example], options: CalibrationOptions,
                labels: np.ndarray) -> None:
    wrong = sorted({ex.task for ex in examples if ex.task != task.name})
    if wrong:
        raise DataError(f'examples of task(s) {wrong} were given to calibrate {task.name!r}')
    counts = np.bincount(labels, minlength=len(task.labels)).tolist()
    need = max(options.folds, 2) + 1
    if min(counts) == 0:
        missing = [task.labels[i] for i, n in enumerate(counts) if n == 0]
        raise DataError(f'the labelled set has no examples of {missing}; every label of task '
                        f'{task.name!r} needs examples (at least {need} each)')
    if min(counts) < need:
        raise DataError(f'too few examples per label ({dict(zip(task.labels, counts))}) for '
                        f'{options.folds}-fold cross-validation; add examples (tens per label at '
                        'least, hundreds for reliable neurons)')
    share = max(counts) / sum(counts)
    if options.metric == 'accuracy' and share > 0.6:
        LOG.warning('the labels are imbalanced (the largest is %.0f%% of the set); consider '
                    "metric='balanced' (--metric balanced)", 100 * share)


def collect_activations(engine: Engine, examples: Sequence[Example], prompt: str,
                        layers: Sequence[int], sites: Sequence[str], batch_size: int,
                        progress: bool = True,
                        vision: bool = False) -> dict[tuple[int, str], torch.Tensor]:
    """
    Read every scalar of `sites` at `layers` for each example: float32 [N, D] per site.

    With `vision`, the same pass also reads the image features (key VISION, [N, hidden]).

    Float32, not float16: at the last prompt position early-layer scalars vary by about 1e-3 of
    their magnitude, below float16's resolution. NaN raises DataError.
    """
    wanted = {(layer, site): None for layer in layers for site in sites}
    wanted.update({VISION: None} if vision else {})
    store: dict[tuple[int, str], torch.Tensor] = {}
    bar = tqdm(total=len(examples), desc='capture', unit='img', disable=None if progress else True)
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size]
        images = [load_image(ex.image_path) for ex in batch]
        values = engine.capture(images, [prompt] * len(batch), wanted)
        for key, value in values.items():  # [B, D] float32
            if bool(torch.isnan(value).any()):
                raise DataError(f'activations at layer {key[0]} ({key[1]}) are NaN for an image '
                                f'of {batch[0].image_path.parent}; use dtype float32 or bfloat16 '
                                '(float16 overflows in some models)')
            if key not in store:
                store[key] = torch.empty((len(examples), value.shape[1]), dtype=torch.float32)
            store[key][start:start + len(batch)] = value.float()
        bar.update(len(batch))
    bar.close()
    return store


@dataclasses.dataclass
class Search:
    """What the search found: out-of-fold answers, choices and the final readouts."""

    oof: OutOfFold
    selection: Selection
    readouts: tuple[Readout, ...]  # anytime layers then the exit layer, refitted on everything
    final: dict[int, dict[str, Any]]  # per readout layer: m, l2, neurons of the linear readout
    site_sizes: dict[str, int]

    @property
    def exit_layer(self) -> int:
        """Return the chosen exit layer."""
        return self.selection.exit_layer


def search_neurons(store: dict[tuple[int, str], torch.Tensor], labels: np.ndarray,
                   task: TaskSpec, options: CalibrationOptions) -> Search:
    """
    Run steps 2 to 4 of the protocol on activations already read.

    ``store`` maps every (layer, site) of layers 0..max to [N, D] values; ``labels`` [N] are the
    label indices in the same order.
    """
    layers = sorted({layer for layer, _ in store})
    fixed = None if options.exit_layer == 'auto' else int(options.exit_layer)
    if layers != list(range(len(layers))) or (fixed is not None and fixed > layers[-1]):
        raise CalibrationError(f'activations must cover layers 0..L (and the fixed exit layer); '
                               f'got layers {layers}')
    y = np.asarray(labels, dtype=np.int64)
    store = {key: value for key, value in store.items() if key[1] in options.sites}
    num_classes, settings = len(task.labels), options.settings()
    bar = tqdm(total=options.folds * options.repeats, desc='cross-validate', unit='fold',
               disable=None if options.progress else True)
    with one_blas_thread():
        oof = cross_validate(store, y, num_classes, settings, lambda _: bar.update(1))
        bar.close()
        selection = select(oof, y, options.sizes, options.readout, fixed, options.tolerance,
                           options.min_anytime)
        keep = sorted(selection.thresholds) + [selection.exit_layer]
        final = fit_layer_readouts(store, y, num_classes, settings, keep)
    readouts = []
    for layer in keep:
        answers = selection.answers[layer]
        readout = final[layer][answers.kind]
        if answers.kind == 'linear':
            readout = dataclasses.replace(readout, temperature=answers.temperature)
        else:
            points, accuracy = answers.table
            readout = dataclasses.replace(readout, params={
                **readout.params, 'share_points': points, 'share_accuracy': accuracy})
        readouts.append(dataclasses.replace(readout,
                                            min_confidence=selection.thresholds.get(layer, 0.0)))
    sizes = {site: int(store[(0, site)].shape[1]) for site in options.sites}
    return Search(oof, selection, tuple(readouts), final, sizes)


def calibrate(model_path: str | Path, task: TaskSpec, examples: Sequence[Example],
              options: CalibrationOptions = CalibrationOptions(),
              test_examples: Sequence[Example] = ()) -> CalibrationResult:
    """Calibrate a profile of `task` on `model_path` from labelled `examples` (see module doc)."""
    from superneuron_ros.method.calibration_report import (add_vision_and_cost, build_report,
                                                           score_test)
    started = time.perf_counter()
    folder = check_model_folder(model_path)
    config = read_config(folder)
    num_layers = family_for(config.model_type).text_config(config).num_hidden_layers
    fixed = None if options.exit_layer == 'auto' else int(options.exit_layer)
    deepest = options.max_layer if options.max_layer is not None else (
        fixed if fixed is not None else num_layers - 1)
    if not 0 <= max(deepest, fixed or 0) < num_layers:
        raise LayerRangeError(f'layer {max(deepest, fixed or 0)} is out of range: {folder.name} '
                              f'has {num_layers} decoder layers (valid: 0..{num_layers - 1})')
    if not examples:
        raise DataError(f'no examples given for task {task.name!r}')
    labels = np.array([ex.label_index for ex in examples], dtype=np.int64)
    _check_data(task, examples, options, labels)
    if test_examples:
        wrong = sorted({ex.task for ex in test_examples if ex.task != task.name})
        if wrong:
            raise DataError(f'test examples of task(s) {wrong} were given for {task.name!r}')
    engine = Engine(load_model(options.load_config(folder, deepest)))
    image_size = None if options.vision_side is None else apply_vision_side(
        engine.family, engine.processor.image_processor, options.vision_side)
    prompt = engine.render_prompt(render_question(task, options.prompt_template))
    LOG.info('calibrating %s on %d examples, layers 0..%d, sites %s, %d x %d-fold CV', task.name,
             len(examples), deepest, list(options.sites), options.repeats, options.folds)
    everything = list(examples) + list(test_examples)
    store = collect_activations(engine, everything, prompt, range(deepest + 1), options.sites,
                                options.batch_size, options.progress, options.vision_only)
    vision = store.pop(VISION, None)
    stages = time_stages(engine, examples, prompt, deepest)
    device = engine.device
    del engine
    release_memory(device)
    captured = time.perf_counter()
    n = len(examples)
    nbytes = sum(t.numel() * t.element_size() for t in store.values())
    search = search_neurons({key: value[:n] for key, value in store.items()}, labels, task,
                            options)
    fitted = time.perf_counter()
    fingerprint = model_fingerprint(folder, config, options.quantization, search.exit_layer,
                                    options.load_config(folder, None).quantized_modules)
    sel = search.selection
    exit_entry = sel.per_layer[search.exit_layer]
    metrics = {
        'heldout_accuracy': exit_entry['selection'], 'cv_std': exit_entry['selection_std'],
        'protocol': f'{options.repeats}x{options.folds}-fold cross-validation',
        'readout': exit_entry['chosen'], 'ece': sel.reliability['ece'],
        'anytime_accuracy': sel.anytime['accuracy'],
        'anytime_mean_layers': sel.anytime['mean_layers'], 'num_examples': n,
        'metric': options.metric, 'seed': options.seed,
        'exit_mode': 'auto' if fixed is None else 'fixed', 'best_layer': sel.best_layer,
        'selection_by_layer': [entry['selection'] for entry in sel.per_layer]}
    profile = Profile(task=task, prompt=prompt, exit_layer=search.exit_layer,
                      readouts=search.readouts, fingerprint=fingerprint, metrics=metrics,
                      image_size=image_size)
    test = None if not test_examples else score_test(
        profile, store, np.arange(n, len(everything)),
        np.array([ex.label_index for ex in test_examples]))
    del store
    baseline, skipped = None, None if options.baseline else 'not asked for (--no-baseline)'
    if options.baseline:
        try:
            baseline = restricted_baseline(options.load_config(folder, None), task, prompt,
                                           examples, options.batch_size, options.progress,
                                           options.vision_side)
            if test is not None:
                test['baseline'] = restricted_baseline(
                    options.load_config(folder, None), task, prompt, test_examples,
                    options.batch_size, options.progress, options.vision_side)
        except DataError as exc:  # labels the first token cannot tell apart
            LOG.warning('baseline skipped: %s', exc)
            skipped = str(exc)
    report = build_report(task, folder, prompt, fingerprint, options, labels, search, baseline,
                          skipped, test, n)
    add_vision_and_cost(report, None if vision is None else vision[:n], stages, labels, options,
                        image_size)
    report['timing_s'] = {'capture': captured - started, 'search': fitted - captured,
                          'total': time.perf_counter() - started}
    report['activation_bytes'] = nbytes
    report['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if baseline is not None:
        profile = dataclasses.replace(profile, metrics={
            **profile.metrics, 'baseline_accuracy': report['baseline']['accuracy']})
    LOG.info('%s: exit layer %d (%s), cross-validated accuracy %.3f +- %.3f', task.name,
             search.exit_layer, exit_entry['chosen'], exit_entry['selection'],
             exit_entry['selection_std'])
    return CalibrationResult(profile, report)
