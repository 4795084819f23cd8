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
The "vision only" baseline: the same readouts on the image features alone, no decoder layer.

The features are the projector's output (what the decoder receives for the image) averaged over
the image tokens, read in the calibration's own pass (:data:`superneuron_ros.vlm.capture.VISION`):
no question, no language layer. They go through the very search of the decoder layers
(:func:`~superneuron_ros.method.crossval.cross_validate`: the vote of the top k 1-D classifiers
and the linear readout over the top m, m and L2 chosen inside each training fold, the ceiling
over every coordinate) on the same folds, so the row compares with the per-layer rows as is.
When its score is within the tolerance of the chosen exit's, the question needs no language
layer: the image features answer it as well.
"""

import dataclasses
from typing import Any

import numpy as np
from superneuron_ros.method.crossval import cross_validate, SearchSettings
from superneuron_ros.method.linear import one_blas_thread
from superneuron_ros.method.selection import select
import torch

NO_LANGUAGE_LAYER = 'this question needs no language layer'


def vision_only_row(features: torch.Tensor, labels: np.ndarray, num_classes: int,
                    settings: SearchSettings, sizes: tuple[int, ...], readout: str,
                    tolerance: float, exit_score: float) -> dict[str, Any]:
    """
    Cross-validate the readouts on image features [N, D]; return the report's vision-only row.

    The row has the per-layer entries' fields (``readouts`` with mean, std and ECE per readout,
    ``chosen``, ``selection``, ``selection_std``), plus ``gap`` (the exit's score minus this
    row's) and ``needs_language_layer`` (False when the gap is within `tolerance`).
    """
    x = features.detach().float().cpu()
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ValueError(f'image features must be [N={len(labels)}, D], got {tuple(x.shape)}')
    y = np.asarray(labels, dtype=np.int64)
    store = {(0, 'residual'): x}  # one pseudo-layer: the search's code path, unchanged
    search = dataclasses.replace(settings, sites=('residual',))
    with one_blas_thread():
        oof = cross_validate(store, y, num_classes, search)
        selection = select(oof, y, sizes, readout, 0, tolerance)
    entry = selection.per_layer[0]
    gap = float(exit_score - entry['selection'])
    row = {'layer': 'vision', 'features': 'projector output averaged over the image tokens',
           'size': int(x.shape[1]), 'readouts': entry['readouts'], 'chosen': entry['chosen'],
           'selection': entry['selection'], 'selection_std': entry['selection_std'],
           'linear_m_chosen': entry['linear_m_chosen'], 'gap': gap,
           'needs_language_layer': gap > tolerance + 1e-12}
    if not row['needs_language_layer']:
        row['note'] = NO_LANGUAGE_LAYER
    return row
