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
Calibration: find the Super Neurons of a task, choose the exit layer, and write a profile.

The held-out protocol:

1. A stratified held-out split (``heldout_fraction`` of every label, seeded) is set aside. Nothing
   is fitted or ranked on it.
2. One pass of a model truncated at the deepest searched layer reads every scalar of the chosen
   sites at the first-generated-token position for every example; values are kept as float16,
   one [samples, scalars] matrix per (layer, site).
3. Layer by layer, k-fold cross-validation inside the probe part scores every scalar as its own
   classifier (a stump for two labels, the nearest 1-D class mean otherwise); the best scalars of
   each (layer, site) are refitted on the whole probe part.
4. For every candidate exit layer L the top-k scalars of layers 0..L (by cross-validated score)
   vote, and that exact classifier is scored on the held-out split, for several k and per site.
   The vote is a plain majority by default; ``vote='skill'`` weights each scalar by how far its
   cross-validated score lies above chance (the report shows both).
5. The exit layer is the shallowest whose held-out score is within ``tolerance`` of the best
   layer's (or the layer the user forced). The profile is that evaluated classifier: neurons
   ranked and fitted on the probe part only. Because the exit layer is picked on the held-out
   split, its held-out accuracy is slightly optimistic; ``superneuron eval`` on another set
   gives an unbiased number.
"""

import dataclasses
import logging
from pathlib import Path
import string
import time
from typing import Any, Sequence

import numpy as np
from superneuron_ros.errors import DataError, LayerRangeError, SuperneuronError
from superneuron_ros.jsonio import write_json
from superneuron_ros.method.baseline import confusion_scores, restricted_baseline
from superneuron_ros.method.classifier import SuperNeuronClassifier
from superneuron_ros.method.probing import (fit_means, fit_stumps, heldout_scores, METRICS, SITES,
                                            top_k)
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import Example, load_image, TaskSpec
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.fingerprint import model_fingerprint, ModelFingerprint
from superneuron_ros.vlm.loading import (check_model_folder, load_model, LoadConfig, read_config,
                                         release_memory)
import torch
from tqdm import tqdm

REPORT_JSON = 'report.json'  # the calibration report, saved beside the profile
LOG = logging.getLogger(__name__)

FLOAT16_MAX = 65504.0
DEFAULT_PROMPT = '{question} Answer with one of: {options}.'
VOTES = ('majority', 'skill')


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
    k: int = 9  # neurons kept in the profile
    vote: str = 'majority'  # 'majority', or 'skill': weights = cross-validated score above chance
    report_k: tuple[int, ...] = (1, 5, 9, 21)  # ensemble sizes compared in the report
    folds: int = 5  # cross-validation folds inside the probe part (ranking)
    heldout_fraction: float = 0.25  # share of every label set aside for evaluation
    exit_layer: int | str = 'auto'  # 'auto' or a layer index
    tolerance: float = 0.01  # exit: shallowest layer within this of the best held-out score
    metric: str = 'accuracy'  # 'accuracy' or 'balanced' (for imbalanced sets)
    prompt_template: str = DEFAULT_PROMPT  # fields: {question}, {options}
    quantization: str = 'nf4'
    device: str = 'auto'
    dtype: str = 'auto'
    quantize_modules: str = 'language'  # see superneuron_ros.vlm.config.QUANTIZED_MODULES
    seed: int = 0
    batch_size: int = 8
    baseline: bool = True  # also score the full model's own (restricted) answer: loads it all
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
        report_k = tuple(_int_field('report_k', v, 1) for v in (self.report_k or ()))
        object.__setattr__(self, 'report_k', tuple(sorted(set(report_k) | {int(self.k)})))
        _int_field('folds', self.folds, 2)
        if not isinstance(self.heldout_fraction, (int, float)) \
                or not 0.0 < float(self.heldout_fraction) < 1.0:
            raise CalibrationError(f'heldout_fraction must lie strictly between 0 and 1, got '
                                   f'{self.heldout_fraction!r}')
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
        if self.vote not in VOTES:
            raise CalibrationError(f'vote must be one of {VOTES}, got {self.vote!r}')
        if self.metric not in METRICS:
            raise CalibrationError(f'metric must be one of {METRICS}, got {self.metric!r}')
        fields = {f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f}
        if 'question' not in fields or fields - {'question', 'options'}:
            raise CalibrationError('prompt_template must contain {question} and no field but '
                                   f'{{question}} and {{options}}, got {self.prompt_template!r}')
        _int_field('seed', self.seed, 0)
        _int_field('batch_size', self.batch_size, 1)
        try:
            LoadConfig('.', quantization=self.quantization, device=self.device, dtype=self.dtype)
        except ValueError as exc:
            raise CalibrationError(str(exc)) from None

    @property
    def combo(self) -> str:
        """Return the name of the site set the profile draws from, e.g. 'residual+mlp'."""
        return '+'.join(self.sites)

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


def split_heldout(labels: torch.Tensor, fraction: float,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return sorted (probe, held-out) sample indices; every label keeps its share in both."""
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    probe, heldout = [], []
    for c in torch.unique(labels).tolist():
        members = (labels == c).nonzero().flatten()
        shuffled = members[torch.randperm(members.numel(), generator=generator)]
        n_held = min(members.numel() - 1, max(1, int(round(fraction * members.numel()))))
        heldout.append(shuffled[:n_held])
        probe.append(shuffled[n_held:])
    return torch.sort(torch.cat(probe)).values, torch.sort(torch.cat(heldout)).values


def _check_data(task: TaskSpec, examples: Sequence[Example], options: CalibrationOptions,
                labels: torch.Tensor, probe: torch.Tensor, heldout: torch.Tensor) -> None:
    wrong = sorted({ex.task for ex in examples if ex.task != task.name})
    if wrong:
        raise DataError(f'examples of task(s) {wrong} were given to calibrate {task.name!r}')
    counts = torch.bincount(labels, minlength=len(task.labels)).tolist()
    probe_counts = torch.bincount(labels[probe], minlength=len(task.labels)).tolist()
    if min(counts) == 0:
        missing = [task.labels[i] for i, n in enumerate(counts) if n == 0]
        raise DataError(f'the labelled set has no examples of {missing}; every label of task '
                        f'{task.name!r} needs examples (at least {options.folds + 2} each)')
    if min(probe_counts) < 2 or min(counts) < 3:
        raise DataError(f'too few examples per label ({dict(zip(task.labels, counts))}) for a '
                        f'held-out split and {options.folds}-fold ranking; add examples (tens per '
                        'label at least, hundreds for reliable neurons)')
    share = max(counts) / sum(counts)
    if options.metric == 'accuracy' and share > 0.6:
        LOG.warning('the labels are imbalanced (the largest is %.0f%% of the set); consider '
                    "metric='balanced' (--metric balanced)", 100 * share)


def collect_activations(engine: Engine, examples: Sequence[Example], prompt: str,
                        layers: Sequence[int], sites: Sequence[str], batch_size: int,
                        progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """
    Read every scalar of `sites` at `layers` for each example: float16 [N, D] per site.

    Values beyond the float16 range saturate (counted in a warning); NaN raises DataError.
    """
    wanted = {(layer, site): None for layer in layers for site in sites}
    store: dict[tuple[int, str], torch.Tensor] = {}
    saturated = 0
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
                store[key] = torch.empty((len(examples), value.shape[1]), dtype=torch.float16)
            saturated += int((value.abs() > FLOAT16_MAX).sum())
            store[key][start:start + len(batch)] = value.clamp(-FLOAT16_MAX, FLOAT16_MAX).half()
        bar.update(len(batch))
    bar.close()
    if saturated:
        LOG.warning('%d activation values exceeded the float16 range and were saturated',
                    saturated)
    return store


@dataclasses.dataclass
class _Block:
    """The best scalars of one (layer, site): ranked by cross-validation, fitted on the probe."""

    layer: int
    site: str
    index: torch.Tensor  # [m] long, best first
    cv: torch.Tensor  # [m] float64 cross-validated scores
    threshold: torch.Tensor  # [m] float32 (stumps)
    polarity: torch.Tensor  # [m] int8 (stumps)
    means: torch.Tensor  # [m, C] float32
    heldout: torch.Tensor  # [n_heldout, m] float32 values on the held-out split


def _search_layer(x: torch.Tensor, layer: int, site: str, y_probe: torch.Tensor,
                  num_classes: int, keep: int, options: CalibrationOptions) -> _Block:
    """Rank the scalars of one [N, D] block (probe rows first) and refit the best on the probe."""
    n_probe = y_probe.shape[0]
    scores = heldout_scores(x[:n_probe], y_probe, num_classes, folds=options.folds,
                            seed=options.seed, metric=options.metric)  # [D]
    best = top_k(scores, keep)  # [m]
    cols = x[:, best].float()  # [N, m]
    means = fit_means(cols[:n_probe], y_probe, num_classes).T.contiguous()  # [m, C]
    if num_classes == 2:
        fit = fit_stumps(cols[:n_probe], y_probe, metric=options.metric)
        threshold, polarity = fit.threshold, fit.polarity
    else:
        threshold = torch.full((len(best),), -float('inf'))
        polarity = torch.ones(len(best), dtype=torch.int8)
    return _Block(layer, site, best, scores[best], threshold, polarity, means, cols[n_probe:])


def _ensemble(blocks: Sequence[_Block], k: int) -> list[tuple[_Block, int]]:
    """Return the k best (block, position) pairs by CV score; ties: shallower block, lower rank."""
    pairs = [(b, j) for b in blocks for j in range(len(b.index))]
    cv = torch.tensor([float(b.cv[j]) for b, j in pairs], dtype=torch.float64)
    return [pairs[i] for i in top_k(cv, k).tolist()]


def _profile(task: TaskSpec, prompt: str, exit_layer: int, chosen: list[tuple[_Block, int]],
             weight: np.ndarray, fingerprint: ModelFingerprint,
             metrics: dict | None = None) -> Profile:
    binary = len(task.labels) == 2
    return Profile(
        task=task, prompt=prompt, exit_layer=exit_layer, kind='stump' if binary else 'means',
        layer=[b.layer for b, _ in chosen], site=[SITES.index(b.site) for b, _ in chosen],
        index=[int(b.index[j]) for b, j in chosen],
        threshold=[float(b.threshold[j]) for b, j in chosen],
        polarity=[int(b.polarity[j]) for b, j in chosen],
        means=np.stack([b.means[j].numpy() for b, j in chosen]),
        weight=weight, fingerprint=fingerprint, metrics=metrics or {})


def _combos(sites: Sequence[str]) -> list[str]:
    return list(sites) + (['+'.join(sites)] if len(sites) > 1 else [])


def _neuron(block: _Block, j: int) -> dict[str, Any]:
    return {'layer': block.layer, 'site': block.site, 'index': int(block.index[j]),
            'cv_score': float(block.cv[j])}


@dataclasses.dataclass
class Search:
    """What the layer search found: per-layer held-out scores, the exit layer and the neurons."""

    per_layer: list[dict[str, Any]]  # JSON data, one entry per searched layer
    best_layer: int
    exit_layer: int
    chosen: list[tuple[_Block, int]]  # the profile's neurons, best first
    weight: np.ndarray  # [k] their vote weights
    heldout: dict[str, Any]  # scores of the chosen classifier on the held-out split
    site_sizes: dict[str, int]


def search_neurons(store: dict[tuple[int, str], torch.Tensor], labels: torch.Tensor,
                   n_probe: int, task: TaskSpec, prompt: str,
                   options: CalibrationOptions) -> Search:
    """
    Run steps 3 to 5 of the protocol on activations already read.

    ``store`` maps every (layer, site) of layers 0..max to [N, D] values whose first `n_probe`
    rows are the probe part; ``labels`` [N] are label indices in the same order.
    """
    layers = sorted({layer for layer, _ in store})
    fixed = None if options.exit_layer == 'auto' else int(options.exit_layer)
    if layers != list(range(len(layers))) or (fixed is not None and fixed > layers[-1]):
        raise CalibrationError(f'activations must cover layers 0..L (and the fixed exit layer); '
                               f'got layers {layers}')
    y_probe, y_held = labels[:n_probe], labels[n_probe:].numpy()
    num_classes, keep = len(task.labels), max(options.report_k)
    blocks: dict[tuple[int, str], _Block] = {}
    for layer in tqdm(layers, desc='fit layers', disable=None if options.progress else True):
        for site in options.sites:
            blocks[(layer, site)] = _search_layer(store[(layer, site)], layer, site, y_probe,
                                                  num_classes, keep, options)
    sizes = {site: int(store[(0, site)].shape[1]) for site in options.sites}
    # Only to build the classifiers being scored; the saved profile gets the real fingerprint.
    provisional = ModelFingerprint(
        architecture='search', model_type='search', num_layers=layers[-1] + 1,
        hidden_size=sizes.get('residual', 1), intermediate_size=sizes.get('mlp', 1),
        quantization=options.quantization, weights_hash='0' * 64, hash_layer=0)
    key = 'accuracy' if options.metric == 'accuracy' else 'balanced_accuracy'
    # The score of a constant answer: what a scalar's cross-validated score must exceed.
    chance = (float(torch.bincount(y_probe).max()) / len(y_probe)
              if options.metric == 'accuracy' else 1.0 / num_classes)
    other_vote = VOTES[1 - VOTES.index(options.vote)]

    def weights(chosen: list[tuple[_Block, int]], vote: str) -> np.ndarray:
        skill = np.array([max(float(b.cv[j]) - chance, 0.0) for b, j in chosen])  # [k]
        return skill if vote == 'skill' and skill.sum() > 0 else np.ones(len(chosen))

    def heldout(exit_layer: int, chosen: list[tuple[_Block, int]],
                vote: str = options.vote) -> dict[str, Any]:
        """Score exactly the classifier a profile of `chosen` would hold, on the held-out split."""
        classifier = SuperNeuronClassifier(_profile(task, prompt, exit_layer, chosen,
                                                    weights(chosen, vote), provisional))
        values = torch.stack([b.heldout[:, j] for b, j in chosen], dim=1)  # [M, k]
        pred = [p.label_index for p in classifier.predict(values.double().numpy())]
        return confusion_scores(pred, y_held, num_classes)

    per_layer = []
    for layer in layers:
        entry: dict[str, Any] = {'layer': layer, 'single': {}, 'ensembles': {}}
        for site in options.sites:
            block = blocks[(layer, site)]
            entry['single'][site] = {**_neuron(block, 0),
                                     'heldout': heldout(layer, [(block, 0)])[key]}
        for combo in _combos(options.sites):
            usable = [blocks[(la, s)] for la in range(layer + 1) for s in combo.split('+')]
            entry['ensembles'][combo] = {str(k): heldout(layer, _ensemble(usable, k))[key]
                                         for k in options.report_k}
        entry['selection'] = entry['ensembles'][options.combo][str(options.k)]
        usable = [blocks[(la, s)] for la in range(layer + 1) for s in options.sites]
        entry['other_vote'] = {'vote': other_vote, 'score': heldout(
            layer, _ensemble(usable, options.k), other_vote)[key]}
        per_layer.append(entry)
    scores = [entry['selection'] for entry in per_layer]
    best_layer = int(np.argmax(scores))
    exit_layer = fixed if fixed is not None else next(
        la for la, s in zip(layers, scores) if s >= scores[best_layer] - options.tolerance - 1e-12)
    usable = [blocks[(la, s)] for la in range(exit_layer + 1) for s in options.sites]
    chosen = _ensemble(usable, options.k)
    return Search(per_layer, best_layer, exit_layer, chosen, weights(chosen, options.vote),
                  heldout(exit_layer, chosen), sizes)


def calibrate(model_path: str | Path, task: TaskSpec, examples: Sequence[Example],
              options: CalibrationOptions = CalibrationOptions()) -> CalibrationResult:
    """Calibrate a profile of `task` on `model_path` from labelled `examples` (see module doc)."""
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
    labels = torch.tensor([ex.label_index for ex in examples], dtype=torch.long)
    probe, heldout = split_heldout(labels, options.heldout_fraction, options.seed)
    _check_data(task, examples, options, labels, probe, heldout)
    order = torch.cat([probe, heldout])
    ordered = [examples[i] for i in order.tolist()]
    n_probe, num_classes = len(probe), len(task.labels)

    engine = Engine(load_model(options.load_config(folder, deepest)))
    prompt = engine.render_prompt(render_question(task, options.prompt_template))
    LOG.info('calibrating %s on %d examples (%d probe, %d held-out), layers 0..%d, sites %s',
             task.name, len(examples), n_probe, len(heldout), deepest, list(options.sites))
    store = collect_activations(engine, ordered, prompt, range(deepest + 1), options.sites,
                                options.batch_size, options.progress)
    device = engine.device
    del engine
    release_memory(device)
    captured = time.perf_counter()
    nbytes = sum(t.numel() * t.element_size() for t in store.values())
    LOG.info('activations: %d scalars x %d samples, %.1f MiB as float16',
             sum(t.shape[1] for t in store.values()), len(examples), nbytes / 2 ** 20)
    search = search_neurons(store, labels[order], n_probe, task, prompt, options)
    del store
    fitted = time.perf_counter()

    baseline, skipped = None, None if options.baseline else 'not asked for (--no-baseline)'
    if options.baseline:
        try:
            baseline = restricted_baseline(options.load_config(folder, None), task, prompt,
                                           ordered[n_probe:], options.batch_size,
                                           options.progress)
        except DataError as exc:  # labels the first token cannot tell apart
            LOG.warning('baseline skipped: %s', exc)
            skipped = str(exc)
    fingerprint = model_fingerprint(folder, config, options.quantization, search.exit_layer,
                                    options.load_config(folder, None).quantized_modules)
    y_probe, y_held = labels[probe], labels[heldout]
    chosen_info = {
        'mode': 'auto' if fixed is None else 'fixed', 'exit_layer': search.exit_layer,
        'best_layer': search.best_layer,
        'best_score': search.per_layer[search.best_layer]['selection'],
        'tolerance': options.tolerance, 'k': options.k, 'sites': options.combo,
        'vote': options.vote, 'weights': search.weight.tolist(),
        **search.heldout, 'neurons': [_neuron(b, j) for b, j in search.chosen]}
    report = {
        'format': 'superneuron_ros.calibration_report', 'format_version': 1,
        'task': task.to_dict(), 'model': str(folder), 'prompt': prompt,
        'fingerprint': fingerprint.to_dict(), 'options': options.to_dict(),
        'data': {'num_examples': len(examples), 'num_probe': n_probe,
                 'num_heldout': len(heldout), 'labels': list(task.labels),
                 'probe_counts': torch.bincount(y_probe, minlength=num_classes).tolist(),
                 'heldout_counts': torch.bincount(y_held, minlength=num_classes).tolist(),
                 'chance': float(torch.bincount(y_held).max() / len(y_held))},
        'search': {'layers': list(range(deepest + 1)), 'sites': list(options.sites),
                   'site_sizes': search.site_sizes, 'metric': options.metric,
                   'scalars': sum(search.site_sizes.values()) * (deepest + 1)},
        'per_layer': search.per_layer, 'chosen': chosen_info, 'baseline': baseline,
        'baseline_skipped': skipped,
        'timing_s': {'capture': captured - started, 'fit': fitted - captured,
                     'baseline': time.perf_counter() - fitted if baseline else 0.0,
                     'total': time.perf_counter() - started},
        'activation_bytes': nbytes}
    metrics = {
        'heldout_accuracy': search.heldout['accuracy'],
        'heldout_balanced_accuracy': search.heldout['balanced_accuracy'],
        'num_probe': n_probe, 'num_heldout': len(heldout), 'k': options.k, 'vote': options.vote,
        'sites': list(options.sites), 'metric': options.metric, 'seed': options.seed,
        'exit_mode': chosen_info['mode'], 'best_layer': search.best_layer,
        'selection_by_layer': [entry['selection'] for entry in search.per_layer],
        'cv_scores': [float(b.cv[j]) for b, j in search.chosen],
        'baseline_accuracy': None if baseline is None else baseline['accuracy']}
    profile = _profile(task, prompt, search.exit_layer, search.chosen, search.weight,
                       fingerprint, metrics)
    LOG.info('%s: exit layer %d, %d neurons, held-out accuracy %.3f', task.name,
             search.exit_layer, len(search.chosen), search.heldout['accuracy'])
    return CalibrationResult(profile, report)
