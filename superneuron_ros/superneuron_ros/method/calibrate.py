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

One function runs the protocol for both users: :func:`calibrate` (``superneuron calibrate``)
loads the model from its folder (:class:`FolderModel`), the running node passes the model it
already holds (``superneuron_ros.runtime.teach``); both call :func:`calibrate_from`.
"""

import dataclasses
import logging
from pathlib import Path
import resource
import time
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.jsonio import write_json
from superneuron_ros.method.baseline import restricted_baseline
from superneuron_ros.method.calibration_options import (CalibrationError, CalibrationHooks,
                                                        CalibrationOptions, DEFAULT_PROMPT,
                                                        search_depth)
from superneuron_ros.method.crossval import cross_validate, fit_layer_readouts, OutOfFold
from superneuron_ros.method.linear import one_blas_thread
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.readouts import Readout
from superneuron_ros.method.selection import select, Selection
from superneuron_ros.method.stage_timing import time_stages
from superneuron_ros.method.tasks import Example, load_image, TaskSpec
from superneuron_ros.vlm.capture import VISION
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.fingerprint import model_fingerprint, ModelFingerprint
from superneuron_ros.vlm.loading import check_model_folder, load_model, read_config
from superneuron_ros.vlm.loading import release_memory
from superneuron_ros.vlm.vision_side import apply_vision_side
import torch
from tqdm import tqdm

REPORT_JSON = 'report.json'  # the calibration report, saved beside the profile
LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    """The calibrated profile and the report of the search (JSON data)."""

    profile: Profile
    report: dict[str, Any]

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """
        Write the profile folder with report.json in it, atomically; return the folder.

        The plot of the report (report.png) is the lab's: ``superneuron calibrate`` adds it.
        """
        return self.profile.save(directory, overwrite=overwrite,
                                 extra=lambda folder: write_json(self.report,
                                                                 folder / REPORT_JSON))


Wanted = Mapping[tuple[int, str], Any]  # (layer, site) -> coordinates to keep (None: all)


class ModelSource(Protocol):
    """What a calibration reads from a model: :class:`FolderModel`, or the node's runtime."""

    folder: Path  # the model folder (recorded in the report)
    baseline_unavailable: str  # why the model's own answer cannot be scored ('' when it can)
    image_size: tuple[int, int] | None  # the resolution activations are read at (None: default)

    def render_prompt(self, question: str) -> str:
        """Render a question through the model's chat template."""

    def capture(self, images: Sequence[np.ndarray], prompts: Sequence[str],
                wanted: Wanted) -> dict[tuple[int, str], torch.Tensor]:
        """Read `wanted` for one batch (:meth:`Engine.capture`): float32 [B, D] per site."""

    def stage_times(self, examples: Sequence[Example], prompt: str,
                    depth: int) -> dict[str, Any] | None:
        """Return per-image stage medians (:func:`time_stages`), or None where not timed."""

    def release(self) -> None:
        """Say that capturing is over (a source that loaded the model frees it)."""

    def fingerprint(self, layer: int) -> ModelFingerprint:
        """Return the model's fingerprint for a profile exiting at `layer`."""

    def baseline(self, task: TaskSpec, prompt: str,
                 examples: Sequence[Example]) -> dict[str, Any]:
        """Score the model's own restricted answer on `examples` (DataError: not possible)."""


class FolderModel:
    """The offline source: a model folder, loaded truncated at `deepest` on first use."""

    def __init__(self, folder: Path, config: Any, options: CalibrationOptions,
                 deepest: int) -> None:
        """Load nothing yet: the model loads at the first prompt or capture."""
        self.folder, self.config, self.options, self.deepest = folder, config, options, deepest
        self.baseline_unavailable = '' if options.baseline else 'not asked for (--no-baseline)'
        self.image_size: tuple[int, int] | None = None
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """Return the truncated model, loading it on first use (at the vision side asked)."""
        if self._engine is None:
            engine = Engine(load_model(self.options.load_config(self.folder, self.deepest)))
            if self.options.vision_side is not None:
                self.image_size = apply_vision_side(
                    engine.family, engine.processor.image_processor, self.options.vision_side)
            self._engine = engine
        return self._engine

    def render_prompt(self, question: str) -> str:
        """Render a question through the model's chat template."""
        return self.engine.render_prompt(question)

    def capture(self, images: Sequence[np.ndarray], prompts: Sequence[str],
                wanted: Wanted) -> dict[tuple[int, str], torch.Tensor]:
        """Read `wanted` for one batch."""
        return self.engine.capture(images, prompts, wanted)

    def stage_times(self, examples: Sequence[Example], prompt: str,
                    depth: int) -> dict[str, Any]:
        """Time the stages of a few examples through layers 0..`depth`."""
        return time_stages(self.engine, examples, prompt, depth)

    def release(self) -> None:
        """Free the truncated model (the baseline loads the whole one afterwards)."""
        if self._engine is not None:
            device, self._engine = self._engine.device, None
            release_memory(device)

    def fingerprint(self, layer: int) -> ModelFingerprint:
        """Return the fingerprint of the folder's model for a profile exiting at `layer`."""
        return model_fingerprint(self.folder, self.config, self.options.quantization, layer,
                                 self.options.load_config(self.folder, None).quantized_modules)

    def baseline(self, task: TaskSpec, prompt: str,
                 examples: Sequence[Example]) -> dict[str, Any]:
        """Score the full model's own restricted answer (it loads the whole model)."""
        return restricted_baseline(self.options.load_config(self.folder, None), task, prompt,
                                   examples, self.options.batch_size, self.options.progress,
                                   self.options.vision_side)


def render_question(task: TaskSpec, template: str = DEFAULT_PROMPT) -> str:
    """Return the question text put to the model: the task question and its options."""
    return template.format(question=task.question, options=', '.join(task.labels))


def _check_data(task: TaskSpec, examples: Sequence[Example], options: CalibrationOptions,
                labels: np.ndarray) -> None:
    if not examples:
        raise DataError(f'no examples given for task {task.name!r}')
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


def collect_activations(engine: Engine | ModelSource, examples: Sequence[Example], prompt: str,
                        layers: Sequence[int], sites: Sequence[str], batch_size: int,
                        progress: bool = True, hooks: CalibrationHooks = CalibrationHooks(),
                        vision: bool = False) -> dict[tuple[int, str], torch.Tensor]:
    """
    Read every scalar of `sites` at `layers` for each example: float32 [N, D] per site.

    With `vision`, the same pass also reads the image features (key VISION, [N, hidden]).

    Float32, not float16: at the last prompt position early-layer scalars vary by about 1e-3 of
    their magnitude, below float16's resolution. NaN raises DataError. `engine` is anything with
    :meth:`Engine.capture`; `hooks` see each batch (and may cancel between batches).
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
        hooks.step('capturing', start + len(batch), len(examples))
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
                   task: TaskSpec, options: CalibrationOptions,
                   hooks: CalibrationHooks = CalibrationHooks()) -> Search:
    """
    Run steps 2 to 4 of the protocol on activations already read.

    ``store`` maps every (layer, site) of layers 0..max to [N, D] values; ``labels`` [N] are the
    label indices in the same order. `hooks` see each layer of each fold (and may cancel).
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
    steps = [0, options.folds * options.repeats * len(layers)]

    def on_layer() -> None:
        steps[0] += 1
        hooks.step('searching', *steps)

    hooks.step('searching', *steps)
    with one_blas_thread():
        oof = cross_validate(store, y, num_classes, settings, lambda _: bar.update(1), on_layer)
        bar.close()
        hooks.step('fitting', 0, 1)
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
    folder = check_model_folder(model_path)
    config = read_config(folder)
    num_layers = family_for(config.model_type).text_config(config).num_hidden_layers
    deepest = search_depth(options, num_layers, folder.name)
    return calibrate_from(FolderModel(folder, config, options, deepest), task, examples, options,
                          deepest, test_examples)


def calibrate_from(source: ModelSource, task: TaskSpec, examples: Sequence[Example],
                   options: CalibrationOptions, deepest: int,
                   test_examples: Sequence[Example] = (),
                   hooks: CalibrationHooks = CalibrationHooks()) -> CalibrationResult:
    """
    Run the whole protocol on `source`, layers 0..`deepest` (checked by the caller).

    The one implementation behind ``superneuron calibrate`` and the node's ``~/teach``.
    """
    from superneuron_ros.method.calibration_report import (add_vision_and_cost, build_report,
                                                           score_test)
    started = time.perf_counter()
    labels = np.array([ex.label_index for ex in examples], dtype=np.int64)
    _check_data(task, examples, options, labels)
    if test_examples:
        wrong = sorted({ex.task for ex in test_examples if ex.task != task.name})
        if wrong:
            raise DataError(f'test examples of task(s) {wrong} were given for {task.name!r}')
    fixed = None if options.exit_layer == 'auto' else int(options.exit_layer)
    prompt = source.render_prompt(render_question(task, options.prompt_template))
    LOG.info('calibrating %s on %d examples, layers 0..%d, sites %s, %d x %d-fold CV', task.name,
             len(examples), deepest, list(options.sites), options.repeats, options.folds)
    everything = list(examples) + list(test_examples)
    store = collect_activations(source, everything, prompt, range(deepest + 1), options.sites,
                                options.batch_size, options.progress, hooks, options.vision_only)
    vision = store.pop(VISION, None)
    stages = source.stage_times(examples, prompt, deepest)
    source.release()
    captured = time.perf_counter()
    n = len(examples)
    nbytes = sum(t.numel() * t.element_size() for t in store.values())
    search = search_neurons({key: value[:n] for key, value in store.items()}, labels, task,
                            options, hooks)
    fitted = time.perf_counter()
    fingerprint = source.fingerprint(search.exit_layer)
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
                      image_size=source.image_size)
    test = None if not test_examples else score_test(
        profile, store, np.arange(n, len(everything)),
        np.array([ex.label_index for ex in test_examples]))
    del store
    baseline, skipped = None, source.baseline_unavailable or None
    if skipped is None:
        try:
            baseline = source.baseline(task, prompt, examples)
            if test is not None:
                test['baseline'] = source.baseline(task, prompt, test_examples)
        except DataError as exc:  # labels the first token cannot tell apart
            LOG.warning('baseline skipped: %s', exc)
            skipped = str(exc)
    report = build_report(task, source.folder, prompt, fingerprint, options, labels, search,
                          baseline, skipped, test, n)
    add_vision_and_cost(report, None if vision is None else vision[:n], stages, labels, options,
                        source.image_size)
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
