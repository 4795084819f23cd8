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
The measured paths besides the node's own: the full model's answers and the cost floor.

- (a) :meth:`FullModelPaths.generate`: greedy generation, the answer matched to a label;
- (b) :meth:`FullModelPaths.prefill`: one prefill, the answer read at the first generated position
  from the labels' first tokens;
- (c) is :meth:`Runtime.answer` itself (the node's path), not re-implemented here;
- (d) :func:`floor_pass`: the calls of :meth:`Engine.capture_shared` without capture hooks and
  without a classifier: preprocessing, the vision tower once, and the decoder layers 0..L.

:func:`layer_view` shows a truncated model as if it had been truncated at a shallower layer, so
one load serves an exit-layer sweep.
"""

from contextlib import contextmanager
import dataclasses
import time
from typing import Any, Iterator, Sequence

import numpy as np
from superneuron_ros.errors import LayerRangeError
from superneuron_ros.method.calibrate import render_question
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.engine import Engine, StageTimes
from superneuron_ros.vlm.loading import LoadedModel, with_exit_layer
import torch
from torch import nn


def option_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[list[int]]:
    """
    Return, per label, the ids of the tokens that can start it as the first answer token.

    Covers the label as written and capitalised, with and without a leading space.
    """
    options = []
    for label in labels:
        ids = set()
        for text in (label, label.capitalize(), ' ' + label, ' ' + label.capitalize()):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if encoded:
                ids.add(int(encoded[0]))
        options.append(sorted(ids))
    return options


@dataclasses.dataclass(frozen=True)
class GeneratedAnswer:
    """The full model's generated answer to one task."""

    text: str
    label_index: int | None  # None when the text names no label
    new_tokens: int


class FullModelPaths:
    """The full model answering tasks the way a VLM is usually used: (a) and (b)."""

    def __init__(self, engine: Engine, tasks: Sequence[TaskSpec], max_new_tokens: int,
                 prompts: Sequence[str] | None = None) -> None:
        """Prepare prompts (default: as calibration renders them) and option tokens of `tasks`."""
        self.engine = engine
        self.tasks = list(tasks)
        self.max_new_tokens = int(max_new_tokens)
        self.prompts = list(prompts) if prompts is not None else [
            engine.render_prompt(render_question(task)) for task in self.tasks]
        tokenizer = engine.processor.tokenizer
        self.options = [option_token_ids(tokenizer, task.labels) for task in self.tasks]
        self.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[GeneratedAnswer]:
        """Answer each task by greedy generation (one call per task), as Engine.generate does."""
        answers = []
        tokenizer = self.engine.processor.tokenizer
        for task, prompt in zip(self.tasks, self.prompts):
            inputs = self.engine.preprocess([image], [prompt])
            output = self.engine.loaded.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                pad_token_id=self.pad_token_id)
            new_tokens = output[0, inputs['input_ids'].shape[1]:]  # [n_new]
            text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
            answers.append(GeneratedAnswer(text, task.match_answer(text),
                                           int(new_tokens.shape[0])))
        return answers

    def prefill(self, image: np.ndarray) -> list[int]:
        """Answer every task from one batched prefill: the best label's first token at the end."""
        logits = self.engine.first_token_logits([image] * len(self.prompts),
                                                self.prompts)  # [K, V]
        answers = []
        for row, options in zip(logits, self.options):
            scores = [float(row[ids].max()) for ids in options]
            answers.append(int(np.argmax(scores)))
        return answers


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.inference_mode()
def floor_pass(engine: Engine, image: np.ndarray, prompts: Sequence[str]) -> StageTimes:
    """
    Run the floor of the super-neuron path and return its stage times.

    The same calls as :meth:`Engine.capture_shared` (processor, vision tower once for all
    prompts, decoder layers 0..L of the loaded model) without hooks, capture or classifier.
    """
    base = engine.loaded.base_model
    family = engine.family
    _sync(engine.device)
    start = time.perf_counter()
    inputs = engine.preprocess([image] * len(prompts), list(prompts))
    _sync(engine.device)
    preprocessed = time.perf_counter()
    features = family.repeat_features(family.image_features(base, inputs), len(prompts))
    _sync(engine.device)
    seen = time.perf_counter()
    base(input_ids=inputs['input_ids'], attention_mask=inputs['attention_mask'],
         **family.decoder_kwargs(inputs), mm_encoder_outputs={'image': features}, use_cache=False)
    _sync(engine.device)
    done = time.perf_counter()
    return StageTimes(preprocess_ms=1e3 * (preprocessed - start),
                      vision_ms=1e3 * (seen - preprocessed), decoder_ms=1e3 * (done - seen))


def image_tokens(engine: Engine, image: np.ndarray, prompt: str) -> tuple[int, int]:
    """Return (image tokens, all prompt tokens) of one prompt about `image`."""
    config = engine.loaded.config
    token = getattr(config, 'image_token_id', None)
    if token is None:
        token = getattr(config, 'image_token_index', None)
    ids = engine.preprocess([image], [prompt])['input_ids'][0]  # [T]
    count = int((ids == token).sum()) if token is not None else 0
    return count, int(ids.shape[0])


QWEN_FAMILIES = ('qwen2_vl', 'qwen2_5_vl', 'qwen3_vl')


def set_vision_side(processor: Any, family: str, side: int) -> Any:
    """
    Bound the images the processor passes to the vision tower by `side`; return the old bound.

    Qwen families resize to at most ``side * side`` pixels (multiples of 28 px, one token per
    28 x 28 block); SmolVLM resizes the longest edge to `side` rounded to whole 512 px tiles
    (plus one global tile when split). Other families have a fixed tower input: returns None
    and changes nothing.
    """
    image_processor = processor.image_processor
    if family in QWEN_FAMILIES:
        value = int(side) * int(side)
    elif family == 'smolvlm':
        tile = int(image_processor.max_image_size['longest_edge'])
        value = max(tile, int(round(side / tile)) * tile)
    else:
        return None
    old = image_processor.size
    if dataclasses.is_dataclass(old):
        image_processor.size = dataclasses.replace(old, longest_edge=value)
    else:
        image_processor.size = {**old, 'longest_edge': value}
    return old


@contextmanager
def vision_side(processor: Any, family: str, side: int | None) -> Iterator[bool]:
    """Apply :func:`set_vision_side` for the block (None: change nothing); yield whether it did."""
    old = None if side is None else set_vision_side(processor, family, side)
    try:
        yield old is not None
    finally:
        if old is not None:
            processor.image_processor.size = old


@contextmanager
def layer_view(loaded: LoadedModel, exit_layer: int) -> Iterator[LoadedModel]:
    """
    Show a truncated model as truncated at `exit_layer`: only layers 0..exit_layer run.

    The deeper layers stay in memory (size a view with :mod:`superneuron_ros.vlm.sizing`),
    but the decoder runs only the layers of the view, exactly as a model loaded with
    ``exit_layer`` would. The original layers are put back on exit.
    """
    if not loaded.is_truncated:
        raise ValueError('layer_view needs a truncated model (loaded with an exit layer)')
    text_model = loaded.family.text_model(loaded.base_model)
    layers = text_model.layers
    if not 0 <= exit_layer < len(layers):
        raise LayerRangeError(f'exit layer {exit_layer} is not loaded (valid: 0..'
                              f'{len(layers) - 1}); load the model deeper')
    text_model.layers = nn.ModuleList(list(layers)[:exit_layer + 1])
    try:
        yield dataclasses.replace(loaded, load_config=with_exit_layer(loaded.load_config,
                                                                      exit_layer))
    finally:
        text_model.layers = layers
