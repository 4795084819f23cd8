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
Super neurons against the model itself: accuracy, confusion and latency on a labelled set.

Three ways to answer each example, all with the profile's prompt, one image at a time:

- ``superneurons``: the profile through :class:`~superneuron_ros.runtime.facade.Runtime`, the real
  inference path (truncated model, shared vision pass, classifier);
- ``restricted``: the full model's next-token logits at the first generated position, restricted
  to the first tokens of the labels (the best-scoring label wins);
- ``generate``: the full model's greedy generation, mapped to a label by
  :meth:`TaskSpec.match_answer`; an answer naming no label counts as wrong ("none").

With ``superneurons``, a second, batched pass reads the activations every readout of the
profile needs and answers with the classifier at the fixed exit and as the anytime cascade,
giving their accuracies, the expected calibration error of their confidences and the mean
number of decoder layers the cascade runs (accuracy only: the latency is the runtime's).
Every accuracy comes with a bootstrap 95% interval (resampled examples, seeded).
"""

import dataclasses
import logging
from pathlib import Path
import time
from typing import Any, Callable, Sequence

import numpy as np
from superneuron_ros.errors import DataError, SuperneuronError
from superneuron_ros.method.baseline import (confusion_scores, label_token_ids,
                                             restricted_predictions)
from superneuron_ros.method.calibrate import collect_activations
from superneuron_ros.method.calibration_report import answer_store
from superneuron_ros.method.classifier import SuperNeuronClassifier
from superneuron_ros.method.linear import expected_calibration_error
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.resolutions import apply_profile_image_size
from superneuron_ros.method.tasks import Example, load_image
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig, release_memory
from tqdm import tqdm

LOG = logging.getLogger(__name__)

METHODS = ('superneurons', 'restricted', 'generate')
BOOTSTRAP = 2000  # resamples of the 95% intervals


def bootstrap_interval(correct: Sequence[bool], resamples: int = BOOTSTRAP,
                       seed: int = 0) -> list[float]:
    """Return the percentile bootstrap 95% interval [low, high] of a mean of 0/1 outcomes."""
    hits = np.asarray(correct, dtype=np.float64)
    if hits.size == 0:
        return [float('nan'), float('nan')]
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, size=(resamples, hits.size))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


class EvaluationError(SuperneuronError, ValueError):
    """An evaluation option is invalid."""


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """Settings of one evaluation; validated on construction."""

    quantization: str = 'nf4'  # another than the profile's measures the difference (warned)
    device: str = 'auto'
    dtype: str = 'auto'
    quantize_modules: str = 'language'
    methods: tuple[str, ...] = METHODS
    max_new_tokens: int = 8  # generation budget of the 'generate' method
    warmup: int = 1  # untimed calls per method before timing
    batch_size: int = 8  # images per pass of the readout pass
    seed: int = 0  # of the bootstrap
    progress: bool = True

    def __post_init__(self) -> None:
        """Check every field; raise EvaluationError naming the bad one."""
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        if not methods or set(methods) - set(METHODS) or len(set(methods)) != len(methods):
            raise EvaluationError(f'methods must be a non-empty selection of {METHODS}, got '
                                  f'{list(methods)}')
        object.__setattr__(self, 'methods', tuple(m for m in METHODS if m in methods))
        for name in ('max_new_tokens', 'warmup', 'batch_size', 'seed'):
            value = getattr(self, name)
            least = 1 if name in ('max_new_tokens', 'batch_size') else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise EvaluationError(f'{name} must be an integer >= {least}, got {value!r}')
        try:
            self.load_config('.')
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None

    def load_config(self, model_path: str | Path) -> LoadConfig:
        """Return the LoadConfig of the full model."""
        return LoadConfig(str(model_path), quantization=self.quantization, device=self.device,
                          dtype=self.dtype, quantize_modules=self.quantize_modules,
                          allow_quantization_mismatch=True)  # a measurement, recorded below


def _timed(examples: Sequence[Example], answer: Callable[[np.ndarray], int], warmup: int,
           desc: str, progress: bool) -> tuple[list[int], list[float]]:
    """Answer each example one by one; return predictions and wall-clock milliseconds."""
    for ex in examples[:warmup]:
        answer(load_image(ex.image_path))
    pred, ms = [], []
    for ex in tqdm(examples, desc=desc, unit='img', disable=None if progress else True):
        image = load_image(ex.image_path)
        start = time.perf_counter()
        pred.append(answer(image))
        ms.append(1e3 * (time.perf_counter() - start))
    return pred, ms


def _latency(ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    return {'mean': float(arr.mean()), 'p50': float(np.percentile(arr, 50)),
            'p90': float(np.percentile(arr, 90)), 'min': float(arr.min())}


def _superneurons(model_path: Path, profile_path: Path, profile: Profile,
                  examples: Sequence[Example], options: EvaluationOptions) -> dict[str, Any]:
    from superneuron_ros.runtime.facade import Runtime
    runtime = Runtime.load(options.load_config(model_path), [profile_path])
    stages = []

    def answer(image: np.ndarray) -> int:
        result = runtime.answer(image, [profile.task.name])
        stages.append(result.times)
        return result.predictions[0].label_index

    try:
        pred, ms = _timed(examples, answer, options.warmup, 'super neurons', options.progress)
    finally:
        runtime.close()
    stages = stages[-len(examples):]  # without the warm-up calls
    stage_ms = {name: float(np.mean([getattr(t, f'{name}_ms') for t in stages]))
                for name in ('preprocess', 'vision', 'decoder', 'classify')}
    return {'method': 'superneurons',
            'description': f'super neurons (exit layer {profile.exit_layer}, '
                           f'k={len(profile.index)})',
            'pred': pred, 'ms': ms, 'stage_ms': stage_ms}


def _readout_pass(model_path: Path, profile: Profile, examples: Sequence[Example],
                  options: EvaluationOptions, truth: np.ndarray) -> dict[str, Any]:
    """Answer every example with the profile's readouts: fixed exit and anytime cascade."""
    config = dataclasses.replace(options.load_config(model_path), exit_layer=profile.exit_layer)
    engine = Engine(load_model(config))
    try:
        apply_profile_image_size(engine.loaded, [profile])
        layers = sorted({int(la) for r in profile.readouts for la in r.neuron_layer})
        store = collect_activations(engine, examples, profile.prompt, layers,
                                    ('residual', 'mlp'), options.batch_size, options.progress)
    finally:
        device = engine.device
        del engine
        release_memory(device)
    answers = answer_store(SuperNeuronClassifier(profile), store, np.arange(len(examples)))
    out = {}
    for name, pred, conf in (('fixed', answers['pred'], answers['confidence']),
                             ('anytime', answers['anytime_pred'],
                              answers['anytime_confidence'])):
        correct = pred == truth
        out[name] = {'accuracy': float(correct.mean()),
                     'accuracy_ci95': bootstrap_interval(correct, seed=options.seed),
                     'ece': expected_calibration_error(conf, correct)}
    out['anytime']['mean_layers'] = float(answers['layers_run'].mean())
    out['anytime']['layers'] = [r.layer for r in profile.readouts]
    out['fixed']['exit_layer'] = profile.exit_layer
    return out


def _full_model(model_path: Path, profile: Profile, examples: Sequence[Example],
                options: EvaluationOptions) -> list[dict[str, Any]]:
    engine = Engine(load_model(options.load_config(model_path)))
    try:
        apply_profile_image_size(engine.loaded, [profile])  # the profile's resolution
        return _full_model_answers(engine, profile, examples, options)
    finally:
        device = engine.device
        del engine
        release_memory(device)


def _full_model_answers(engine: Engine, profile: Profile, examples: Sequence[Example],
                        options: EvaluationOptions) -> list[dict[str, Any]]:
    task, prompt, out = profile.task, profile.prompt, []
    token_sets = None
    if 'restricted' in options.methods:
        try:
            token_sets = label_token_ids(engine.processor.tokenizer, prompt, task.labels)
        except DataError as exc:
            LOG.warning('restricted answers skipped: %s', exc)
            out.append({'method': 'restricted', 'skipped': str(exc)})
    if token_sets is not None:

        def restricted(image: np.ndarray) -> int:
            logits = engine.first_token_logits([image], [prompt])  # [1, V]
            return int(restricted_predictions(logits, token_sets)[0])

        pred, ms = _timed(examples, restricted, options.warmup, 'restricted',
                          options.progress)
        out.append({'method': 'restricted', 'pred': pred, 'ms': ms,
                    'description': 'full model, first token restricted to the labels'})
    if 'generate' in options.methods:
        texts: list[str] = []

        def generate(image: np.ndarray) -> int:
            text = engine.generate(image, prompt, options.max_new_tokens)
            texts.append(text)
            match = task.match_answer(text)
            return -1 if match is None else match

        pred, ms = _timed(examples, generate, options.warmup, 'generate', options.progress)
        out.append({'method': 'generate', 'pred': pred, 'ms': ms,
                    'description': 'full model, greedy generation mapped to a label',
                    'sample_answers': texts[options.warmup:][:5]})
    return out


def evaluate(model_path: str | Path, profile_path: str | Path, examples: Sequence[Example],
             options: EvaluationOptions = EvaluationOptions()) -> dict[str, Any]:
    """
    Compare the profile's answers with the full model's own on `examples`; return JSON data.

    The result holds, per method, accuracy, balanced accuracy, confusion (rows: true label;
    columns: predicted label, then 'none') and latency per image in milliseconds.
    """
    model_path, profile_path = Path(model_path), Path(profile_path)
    profile = Profile.load(profile_path)
    task = profile.task
    if not examples:
        raise DataError(f'no examples to evaluate task {task.name!r} on')
    wrong = sorted({ex.task for ex in examples if ex.task != task.name})
    if wrong:
        raise DataError(f'examples of task(s) {wrong} were given to evaluate {task.name!r}')
    runs = []
    if 'superneurons' in options.methods:
        runs.append(_superneurons(model_path, profile_path, profile, examples, options))
    if {'restricted', 'generate'} & set(options.methods):
        runs.extend(_full_model(model_path, profile, examples, options))
    truth = [ex.label_index for ex in examples]
    skipped = {run['method']: run['skipped'] for run in runs if 'skipped' in run}
    runs = [run for run in runs if 'skipped' not in run]
    if not runs:
        raise EvaluationError(f'no method could run: {skipped}')
    methods = []
    for run in runs:
        pred, ms = run.pop('pred'), run.pop('ms')
        correct = np.asarray(pred) == np.asarray(truth)
        methods.append({**run, **confusion_scores(pred, truth, len(task.labels)),
                        'accuracy_ci95': bootstrap_interval(correct, seed=options.seed),
                        'latency_ms': _latency(ms)})
    readouts = None
    if 'superneurons' in options.methods:
        readouts = _readout_pass(model_path, profile, examples, options, np.asarray(truth))
    reference = next((m for m in methods if m['method'] == 'generate'), methods[-1])
    for method in methods:
        method['speedup'] = reference['latency_ms']['mean'] / method['latency_ms']['mean']
    counts = np.bincount(truth, minlength=len(task.labels))
    return {'format': 'superneuron_ros.evaluation', 'format_version': 2,
            'task': task.to_dict(), 'model': str(model_path), 'profile': str(profile_path),
            'exit_layer': profile.exit_layer,
            'image_size': None if profile.image_size is None else list(profile.image_size),
            'quantization': options.quantization,
            'quantized_modules': options.load_config(model_path).quantized_modules,
            'profile_quantization': [profile.fingerprint.quantization,
                                     profile.fingerprint.quantized_modules],
            'num_examples': len(examples), 'label_counts': counts.tolist(),
            'chance': float(counts.max() / counts.sum()),
            'speedup_reference': reference['method'], 'methods': methods, 'skipped': skipped,
            'readouts': readouts, 'bootstrap_resamples': BOOTSTRAP}
