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
The model's own answer to a categorical question: its first token restricted to the labels.

The reference every calibration and evaluation compares super neurons with. The label-token rule
lives here only, so calibration, ``superneuron eval`` and ``superneuron bench`` score the same
baseline.
"""

from collections import Counter
import time
from typing import Any, Sequence

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.method.tasks import Example, load_image, TaskSpec
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig, release_memory
from superneuron_ros.vlm.vision_side import apply_vision_side
import torch
from tqdm import tqdm


def label_token_ids(tokenizer: Any, prompt: str,
                    labels: Sequence[str]) -> list[tuple[int, ...]]:
    """
    Return, per label, the token ids that can start it right after `prompt`.

    Each label is tried as written, lower-case and capitalised, with and without a leading space,
    and the first token where ``prompt + text`` departs from ``prompt`` is kept. A token that
    could start several labels is dropped from all of them; a label left without tokens raises
    DataError.
    """
    base = tokenizer(prompt, add_special_tokens=False)['input_ids']
    sets = []
    for label in labels:
        found = set()
        for variant in dict.fromkeys((label, label.lower(), label.capitalize())):
            for text in (variant, ' ' + variant):
                full = tokenizer(prompt + text, add_special_tokens=False)['input_ids']
                i = next((i for i, (a, b) in enumerate(zip(base, full)) if a != b),
                         min(len(base), len(full)))
                if i < len(full):
                    found.add(int(full[i]))
        sets.append(found)
    counts = Counter(token for found in sets for token in found)
    result = [tuple(sorted(t for t in found if counts[t] == 1)) for found in sets]
    ambiguous = [label for label, ids in zip(labels, result) if not ids]
    if ambiguous:
        raise DataError(f'labels {ambiguous} start with the same token as another label, so the '
                        "model's first token cannot tell them apart; skip the restricted "
                        'baseline (--no-baseline, or --methods without restricted)')
    return result


def restricted_predictions(logits: torch.Tensor,
                           token_sets: Sequence[Sequence[int]]) -> np.ndarray:
    """Return the label [B] whose best first token has the highest logit in logits [B, V]."""
    scores = torch.stack([logits[:, list(ids)].max(dim=1).values for ids in token_sets],
                         dim=1)  # [B, C]
    return torch.argmax(scores, dim=1).numpy()


def confusion_scores(pred: Sequence[int], truth: Sequence[int],
                     num_classes: int) -> dict[str, Any]:
    """
    Return accuracy, balanced accuracy and confusion [true][predicted, then 'none'].

    A prediction of -1 (no label) lands in the last column and counts as wrong.
    """
    pred = np.asarray(pred, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    confusion = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(confusion, (truth, np.where(pred < 0, num_classes, pred)), 1)
    recalls = [confusion[c, c] / confusion[c].sum() for c in range(num_classes)
               if confusion[c].sum()]
    return {'accuracy': float((pred == truth).mean()) if len(truth) else float('nan'),
            'balanced_accuracy': float(np.mean(recalls)) if recalls else float('nan'),
            'confusion': confusion.tolist(), 'unmapped': int((pred < 0).sum())}


def restricted_baseline(load_config: LoadConfig, task: TaskSpec, prompt: str,
                        examples: Sequence[Example], batch_size: int = 8,
                        progress: bool = True,
                        vision_side: int | None = None) -> dict[str, Any]:
    """
    Score the full model's first token restricted to the labels on `examples` (batched).

    `vision_side` bounds the processor's resize as in calibration (None: the default).
    """
    started = time.perf_counter()
    engine = Engine(load_model(load_config))
    try:
        if vision_side is not None:
            apply_vision_side(engine.family, engine.processor.image_processor, vision_side)
        token_sets = label_token_ids(engine.processor.tokenizer, prompt, task.labels)
        pred = []
        for start in tqdm(range(0, len(examples), batch_size), desc='baseline', unit='batch',
                          disable=None if progress else True):
            batch = examples[start:start + batch_size]
            logits = engine.first_token_logits([load_image(ex.image_path) for ex in batch],
                                               [prompt] * len(batch))  # [B, V]
            pred.extend(restricted_predictions(logits, token_sets).tolist())
        tokens = {label: engine.processor.tokenizer.convert_ids_to_tokens(list(ids))
                  for label, ids in zip(task.labels, token_sets)}
    finally:
        device = engine.device
        del engine
        release_memory(device)
    scores = confusion_scores(pred, [ex.label_index for ex in examples], len(task.labels))
    return {'method': 'restricted', **scores, 'label_tokens': tokens,
            'num_examples': len(examples), 'seconds': time.perf_counter() - started}
