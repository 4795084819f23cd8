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
Calibration at several vision sides, compared in one report; one profile kept.

Each side is a full calibration (:func:`~superneuron_ros.method.calibrate.calibrate` with that
``vision_side``) on the same examples and folds. The comparison has one row per side: the size
it sets, the image tokens, the chosen exit layer and readout, the cross-validated accuracy
(mean and std over the folds) and the median cost per image of the vision tower and of the
decoder up to that exit. The costs compared are measured again after every calibration, on one
loaded model, the sides taking turns (:data:`ROUNDS` rounds), so that a load on the machine
that comes and goes affects every side alike; each calibration's own figure stays in its
report (``cost_ms``). The kept profile follows :data:`RULE`; the report of the kept side holds
the rows of every side.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from superneuron_ros.method.calibrate import (calibrate, CalibrationError, CalibrationOptions,
                                              CalibrationResult)
from superneuron_ros.method.stage_timing import time_stages
from superneuron_ros.method.tasks import Example, TaskSpec
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, release_memory
from superneuron_ros.vlm.vision_side import apply_vision_side

LOG = logging.getLogger(__name__)
ROUNDS = 3  # turns of the sides in the comparison's timing
ROUND_IMAGES = 4  # images timed per side and round
RULE = ('kept: the cheapest side (vision + decoder ms per image) whose cross-validated accuracy '
        'is within the tolerance of the best side')


def time_sides(model_path: str | Path, examples: Sequence[Example], prompt: str,
               exits: dict[int, int], options: CalibrationOptions) -> dict[int, dict[str, float]]:
    """Return per side the median vision and decoder ms per image, the sides taking turns."""
    engine = Engine(load_model(options.load_config(model_path, max(exits.values()))))
    image_processor = engine.processor.image_processor
    timed: dict[int, list[tuple[float, float]]] = {side: [] for side in exits}
    try:
        for _ in range(ROUNDS):
            for side, exit_layer in exits.items():
                apply_vision_side(engine.family, image_processor, side)
                stages = time_stages(engine, examples, prompt, exit_layer, ROUND_IMAGES)
                timed[side].append((stages['vision_ms'],
                                    stages['decoder_ms_by_layer'][exit_layer]))
    finally:
        device = engine.device
        del engine
        release_memory(device)
    return {side: {'vision_ms': float(np.median([v for v, _ in values])),
                   'decoder_ms': float(np.median([d for _, d in values]))}
            for side, values in timed.items()}


def resolution_row(side: int, report: dict[str, Any],
                   timed: dict[str, float]) -> dict[str, Any]:
    """Return the comparison row of one side's report, with the costs `timed` on one model."""
    chosen, cost = report['chosen'], report['cost_ms']
    vision = report.get('vision_only')
    baseline = report.get('baseline')
    row = {'vision_side': side, 'image_size': report['image_size'],
           'image_tokens': cost['image_tokens'], 'exit_layer': chosen['exit_layer'],
           'readout': chosen['kind'], 'accuracy': chosen['accuracy'],
           'accuracy_std': chosen['accuracy_std'],
           'anytime_accuracy': report['anytime']['accuracy'],
           'anytime_mean_layers': report['anytime']['mean_layers'],
           'vision_only_accuracy': None if not vision else vision['selection'],
           'baseline_accuracy': None if not baseline else baseline['accuracy'],
           'vision_ms': timed['vision_ms'], 'decoder_ms': timed['decoder_ms']}
    row['total_ms'] = row['vision_ms'] + row['decoder_ms']
    return row


def keep_side(rows: Sequence[dict[str, Any]], tolerance: float) -> int:
    """Return the side :data:`RULE` keeps: cheapest within `tolerance` of the best accuracy."""
    best = max(row['accuracy'] for row in rows)
    good = [row for row in rows if row['accuracy'] >= best - tolerance - 1e-12]
    return min(good, key=lambda row: (row['total_ms'], row['vision_side']))['vision_side']


def calibrate_resolutions(model_path: str | Path, task: TaskSpec, examples: Sequence[Example],
                          sides: Sequence[int], options: CalibrationOptions = CalibrationOptions(),
                          test_examples: Sequence[Example] = ()) -> CalibrationResult:
    """
    Calibrate at each of `sides`; return the kept side's result, its report comparing them all.

    The tolerance of the comparison is ``options.tolerance``, the exit layer's.
    """
    sides = tuple(sides)
    if len(sides) < 2 or len(set(sides)) != len(sides):
        raise CalibrationError(f'compare at least two different vision sides, got {list(sides)}')
    results = {}
    for side in sides:
        LOG.info('calibrating %s at vision side %d', task.name, side)
        results[side] = calibrate(model_path, task, examples,
                                  dataclasses.replace(options, vision_side=side), test_examples)
    prompt = results[sides[0]].profile.prompt
    timed = time_sides(model_path, examples, prompt,
                       {side: results[side].profile.exit_layer for side in sides}, options)
    rows = [resolution_row(side, results[side].report, timed[side]) for side in sides]
    kept = keep_side(rows, options.tolerance)
    result = results[kept]
    report = {**result.report, 'resolutions': {
        'rule': RULE, 'tolerance': options.tolerance, 'kept': kept, 'rows': rows,
        'timing': f'medians of {ROUNDS} rounds x {ROUND_IMAGES} images per side, the sides '
                  'taking turns on one loaded model'}}
    LOG.info('%s: kept vision side %d of %s', task.name, kept, list(sides))
    return CalibrationResult(result.profile, report)
