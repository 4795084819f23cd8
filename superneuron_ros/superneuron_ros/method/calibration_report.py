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

"""The calibration report (report.json): every figure of the search, and the test set's score."""

from pathlib import Path
import time
from typing import Any, TYPE_CHECKING

import numpy as np
from superneuron_ros.method.baseline import confusion_scores
from superneuron_ros.method.classifier import SuperNeuronClassifier
from superneuron_ros.method.linear import expected_calibration_error
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.method.vision_only import vision_only_row
from superneuron_ros.vlm.capture import SITES
from superneuron_ros.vlm.fingerprint import ModelFingerprint
import torch

if TYPE_CHECKING:  # pragma: no cover
    from superneuron_ros.method.calibrate import CalibrationOptions, Search

REPORT_FORMAT_VERSION = 2


def build_report(task: TaskSpec, folder: Path, prompt: str, fingerprint: ModelFingerprint,
                 options: 'CalibrationOptions', labels: np.ndarray, search: 'Search',
                 baseline: dict[str, Any] | None, skipped: str | None,
                 test: dict[str, Any] | None, n: int) -> dict[str, Any]:
    """Return the calibration report of one search."""
    sel = search.selection
    counts = np.bincount(labels, minlength=len(task.labels))
    exit_entry = sel.per_layer[sel.exit_layer]
    exit_readout = search.readouts[-1]
    final = search.final[sel.exit_layer]
    layers = [entry['layer'] for entry in sel.per_layer]
    chosen = {
        'mode': 'auto' if options.exit_layer == 'auto' else 'fixed',
        'exit_layer': sel.exit_layer, 'best_layer': sel.best_layer,
        'best_score': sel.per_layer[layers.index(sel.best_layer)]['selection'],
        'tolerance': options.tolerance, 'readout': exit_readout.kind,
        'kind': exit_entry['chosen'], 'accuracy': exit_entry['selection'],
        'accuracy_std': exit_entry['selection_std'], 'ece': sel.reliability['ece'],
        'num_neurons': exit_readout.num_neurons, 'temperature': exit_readout.temperature,
        'linear_m': final['m'], 'linear_l2': final['l2'], 'k': options.k,
        'neurons': [{'layer': int(la), 'site': ('residual', 'mlp')[int(si)], 'index': int(ix)}
                    for la, si, ix in zip(exit_readout.neuron_layer, exit_readout.site,
                                          exit_readout.index)],
        'anytime_layers': [r.layer for r in search.readouts[:-1]]}
    return {
        'format': 'superneuron_ros.calibration_report', 'format_version': REPORT_FORMAT_VERSION,
        'task': task.to_dict(), 'model': str(folder), 'prompt': prompt,
        'fingerprint': fingerprint.to_dict(), 'options': options.to_dict(),
        'data': {'num_examples': n, 'labels': list(task.labels), 'counts': counts.tolist(),
                 'chance': float(counts.max() / counts.sum())},
        'search': {'layers': layers, 'sites': list(options.sites),
                   'site_sizes': search.site_sizes, 'metric': options.metric,
                   'scalars': sum(search.site_sizes.values()) * len(layers),
                   'protocol': f'{options.repeats} x {options.folds}-fold stratified '
                               'cross-validation; ranking, m and L2 chosen inside each '
                               'training fold'},
        'per_layer': sel.per_layer, 'chosen': chosen, 'anytime': sel.anytime,
        'reliability': sel.reliability, 'baseline': baseline, 'baseline_skipped': skipped,
        'test': test}


def add_vision_and_cost(report: dict[str, Any], vision: torch.Tensor | None,
                        stages: dict[str, Any] | None, labels: np.ndarray,
                        options: 'CalibrationOptions',
                        image_size: tuple[int, int] | None) -> None:
    """
    Add the image size, the per-image cost at the chosen exit and the vision-only row.

    ``stages`` is :func:`~superneuron_ros.method.stage_timing.time_stages`'s result (None: not
    timed, as in a teach); ``vision``
    the image features [N, D] of the examples (None: the row is skipped).
    """
    chosen = report['chosen']
    report['image_size'] = None if image_size is None else list(image_size)
    report['cost_ms'] = None if stages is None else {
        'images': stages['images'], 'image_tokens': stages['image_tokens'],
        'preprocess': stages['preprocess_ms'], 'vision': stages['vision_ms'],
        'decoder': stages['decoder_ms_by_layer'][chosen['exit_layer']],
        'decoder_by_layer': stages['decoder_ms_by_layer'],
        'note': 'medians per image, one at a time through the runtime pass (one prompt)'}
    if vision is None:
        report['vision_only'] = None
        return
    started = time.perf_counter()
    row = vision_only_row(vision, labels, len(report['data']['labels']), options.settings(),
                          options.sizes, options.readout, options.tolerance, chosen['accuracy'])
    row['seconds'] = time.perf_counter() - started
    report['vision_only'] = row


def answer_store(classifier: SuperNeuronClassifier, store: dict[tuple[int, str], torch.Tensor],
                 rows: np.ndarray) -> dict[str, np.ndarray]:
    """
    Answer `rows` of a store with a profile's classifier, at the exit and as an anytime cascade.

    Returns fixed predictions and confidences, and the cascade's predictions, confidences and
    decoder layers run, each [len(rows)].
    """
    def at(layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = classifier.readout(layer)
        values = np.stack([store[(int(la), SITES[int(si)])][rows, int(ix)].double().numpy()
                           for la, si, ix in zip(r.neuron_layer, r.site, r.index)], axis=1)
        predictions = classifier.predict_values(layer, values)
        return (np.array([p.label_index for p in predictions]),
                np.array([p.confidence for p in predictions]),
                np.array([p.confident for p in predictions]))

    pred, conf, _ = at(classifier.exit_layer)
    any_pred, any_conf = pred.copy(), conf.copy()
    run = np.full(len(rows), classifier.exit_layer + 1)
    open_ = np.ones(len(rows), dtype=bool)
    for layer in classifier.layers[:-1]:
        p, c, ok = at(layer)
        take = open_ & ok
        any_pred[take], any_conf[take], run[take] = p[take], c[take], layer + 1
        open_ &= ~take
    return {'pred': pred, 'confidence': conf, 'anytime_pred': any_pred,
            'anytime_confidence': any_conf, 'layers_run': run}


def score_test(profile: Profile, store: dict[tuple[int, str], torch.Tensor], rows: np.ndarray,
               truth: np.ndarray) -> dict[str, Any]:
    """Score the final profile once on test rows of a store: fixed exit and anytime."""
    answers = answer_store(SuperNeuronClassifier(profile), store, rows)
    correct = answers['pred'] == truth
    return {'num_examples': int(len(rows)),
            'fixed': {**confusion_scores(answers['pred'], truth, len(profile.task.labels)),
                      'ece': expected_calibration_error(answers['confidence'], correct)['ece']},
            'anytime': {'accuracy': float((answers['anytime_pred'] == truth).mean()),
                        'mean_layers': float(answers['layers_run'].mean()),
                        'ece': expected_calibration_error(
                            answers['anytime_confidence'],
                            answers['anytime_pred'] == truth)['ece']}}
