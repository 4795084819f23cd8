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

- (a) :meth:`FullModelPaths.generate`: greedy generation (:meth:`Engine.generate_tokens`), the
  answer matched to a label;
- (b) :meth:`FullModelPaths.prefill`: one prefill, the answer read at the first generated position
  from the labels' first tokens (the rule of :func:`~superneuron_ros.method.baseline.
  label_token_ids`, the restricted baseline of calibration and evaluation);
- (c) is :meth:`Runtime.answer` itself (the node's path), not re-implemented here;
- (d) :func:`floor_pass`: :meth:`Engine.capture_shared` reading nothing, without a classifier:
  preprocessing once, the vision tower once, the shared prompt prefix once, layers 0..L.

:func:`layer_view` shows a truncated model as if it had been truncated at a shallower layer, so
one load serves an exit-layer sweep.
"""

from contextlib import contextmanager
import dataclasses
from typing import Iterator, Sequence

import numpy as np
from superneuron_ros.errors import LayerRangeError
from superneuron_ros.method.baseline import label_token_ids, restricted_predictions
from superneuron_ros.method.calibrate import render_question
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.engine import Engine, StageTimes
from superneuron_ros.vlm.loading import LoadedModel, with_exit_layer
from torch import nn


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
        """Prepare prompts (default: as calibration renders them) and label tokens of `tasks`."""
        self.engine = engine
        self.tasks = list(tasks)
        self.max_new_tokens = int(max_new_tokens)
        self.prompts = list(prompts) if prompts is not None else [
            engine.render_prompt(render_question(task)) for task in self.tasks]
        tokenizer = engine.processor.tokenizer
        self.label_tokens = [label_token_ids(tokenizer, prompt, task.labels)
                             for task, prompt in zip(self.tasks, self.prompts)]

    def generate(self, image: np.ndarray) -> list[GeneratedAnswer]:
        """Answer each task by greedy generation, one call per task."""
        answers = []
        for task, prompt in zip(self.tasks, self.prompts):
            generated = self.engine.generate_tokens(image, prompt, self.max_new_tokens)
            answers.append(GeneratedAnswer(generated.text, task.match_answer(generated.text),
                                           generated.new_tokens))
        return answers

    def prefill(self, image: np.ndarray) -> list[int]:
        """Answer every task from one batched prefill: the best label's first token at the end."""
        logits = self.engine.first_token_logits([image] * len(self.prompts),
                                                self.prompts)  # [K, V]
        return [int(restricted_predictions(row[None], tokens)[0])
                for row, tokens in zip(logits, self.label_tokens)]


def floor_pass(engine: Engine, image: np.ndarray, prompts: Sequence[str]) -> StageTimes:
    """
    Run the floor of the super-neuron path and return its stage times.

    :meth:`Engine.capture_shared` of the same prompts reading no activation: the processor
    once, the vision tower once, the shared prefix once and decoder layers 0..L of the loaded
    model, without classifier.
    """
    return engine.capture_shared(image, list(prompts), {}).times


def image_tokens(engine: Engine, image: np.ndarray, prompt: str) -> tuple[int, int]:
    """Return (image tokens, all prompt tokens) of one prompt about `image`."""
    token = getattr(engine.loaded.config, 'image_token_id', None)
    ids = engine.preprocess([image], [prompt])['input_ids'][0]  # [T]
    count = int((ids == token).sum()) if token is not None else 0
    return count, int(ids.shape[0])


@contextmanager
def vision_side(engine: Engine, side: int | None) -> Iterator[bool]:
    """
    Bound the processor's resize by `side` for the block (None: change nothing).

    Yields whether the family allows it (:meth:`Family.set_vision_side`); restores on exit.
    """
    image_processor = engine.processor.image_processor
    old = None if side is None else engine.family.set_vision_side(image_processor, side)
    try:
        yield old is not None
    finally:
        if old is not None:
            image_processor.size = old


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
