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
Per-image cost of a calibration's setting: vision milliseconds and decoder milliseconds per layer.

A few calibration images (after untimed warm-up passes) go one at a time through the runtime's pass
(:meth:`~superneuron_ros.vlm.engine.Engine.capture_shared`, one prompt), with a watcher after
every decoder layer noting the time, so one pass gives the decoder's cost at every exit layer.
The medians are reported; what an exit layer costs is read off after the search chose it.
"""

import time
from typing import Any, Sequence

import numpy as np
from superneuron_ros.method.tasks import Example, load_image
from superneuron_ros.vlm.engine import Engine
import torch

TIMED_IMAGES = 8  # images timed per calibration
WARMUP = 3  # untimed passes first (the first passes of a process are several times slower)


def time_stages(engine: Engine, examples: Sequence[Example], prompt: str, depth: int,
                count: int = TIMED_IMAGES) -> dict[str, Any]:
    """
    Time `count` examples through layers 0..`depth`; return medians in milliseconds.

    Returns ``vision_ms``, ``preprocess_ms``, ``decoder_ms_by_layer`` (cumulative: the decoder's
    cost of an exit at layer L is entry L), ``image_tokens`` and ``images``.
    """
    chosen = list(examples[:count + WARMUP])
    warmup = min(WARMUP, len(chosen) - 1)
    device = engine.device

    def now() -> float:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return time.perf_counter()

    first = load_image(chosen[0].image_path)
    _, sequences = engine.prompt_sequences(first, [prompt])
    token = getattr(engine.loaded.config, 'image_token_id', None)
    tokens = 0 if token is None else int(sum(t == token for t in sequences[0]))
    rows = []
    for i, example in enumerate(chosen):
        marks: dict[int, float] = {}

        def mark(layer: int, values: Any) -> bool:
            marks[layer] = now()
            return False

        shared = engine.capture_shared(load_image(example.image_path), [prompt], {},
                                       depth=depth,
                                       watch={layer: mark for layer in range(depth + 1)})
        if i < warmup:
            continue
        decoder_start = marks[depth] - shared.times.decoder_ms / 1e3  # the last mark ends it
        rows.append([shared.times.preprocess_ms, shared.times.vision_ms]
                    + [1e3 * (marks[la] - decoder_start) for la in range(depth + 1)])
    arr = np.median(np.asarray(rows, dtype=np.float64), axis=0)
    return {'images': len(rows), 'image_tokens': tokens, 'preprocess_ms': float(arr[0]),
            'vision_ms': float(arr[1]), 'decoder_ms_by_layer': [float(v) for v in arr[2:]]}
