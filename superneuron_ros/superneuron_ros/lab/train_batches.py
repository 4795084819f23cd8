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
Training batches of the demo model: samples packed into rows that share their image prefix.

See :class:`QABatcher`; :func:`first_token_accuracy` is the fast in-training check built on it.
"""

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.lab.scene_types import Scene
from superneuron_ros.lab.scenes import get_task
import torch

IGNORE = -100  # label of positions without loss


@dataclass(frozen=True)
class Sample:
    """
    One image and the (task, true label) questions asked about it.

    `wordings` gives each question's text, in order; empty: every task's canonical question.
    `scene`, when kept, is what the image shows (the training's dense read-out uses it).
    """

    image: np.ndarray  # (H, W, 3) uint8
    questions: tuple[tuple[str, str], ...]
    wordings: tuple[str, ...] = ()
    scene: Scene | None = None

    def __post_init__(self) -> None:
        """Check that the wordings, when given, match the questions one to one."""
        if self.wordings and len(self.wordings) != len(self.questions):
            raise DataError(f'{len(self.wordings)} wordings for {len(self.questions)} questions')

    def texts(self) -> tuple[str, ...]:
        """Return the text of each question: its wording, or the task's canonical question."""
        return self.wordings or tuple(get_task(task).question for task, _ in self.questions)


class QABatcher:
    """
    Turns samples into model inputs: chat-templated prompts, answer + eos as the targets.

    A sample with several questions becomes one packed row: the image prefix (everything up to the
    last image token) once, then one segment per question (its prompt tail, answer and eos). A
    4D mask lets each segment see the prefix and itself only, and position ids restart after the
    prefix, so every segment is computed exactly as its own single-question sequence would be,
    while the image tokens are computed once.
    """

    def __init__(self, processor: Any) -> None:
        """Wrap a LLaVA-style processor (tokenizer, image processor, chat template)."""
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prefix: list[int] | None = None
        self._tails: dict[str, list[int]] = {}
        self._answers: dict[str, list[int]] = {}

    def prompt(self, question: str) -> str:
        """Render one image and `question` through the chat template with the generation prompt."""
        messages = [{'role': 'user', 'content': [
            {'type': 'image'}, {'type': 'text', 'text': question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def tail_ids(self, question: str) -> list[int]:
        """Return the prompt's ids after the image prefix (placeholders expanded as usual)."""
        if question not in self._tails:
            side = self.processor.image_processor.crop_size['height']
            blank = np.zeros((side, side, 3), dtype=np.uint8)
            ids = [int(i) for i in self.processor(
                images=[blank], text=[self.prompt(question)])['input_ids'][0]]
            cut = len(ids) - ids[::-1].index(self.tokenizer.image_token_id)
            if self.prefix is None:
                self.prefix = ids[:cut]
            if ids[:cut] != self.prefix:
                raise DataError('the chat template puts different text before the image for '
                                'different questions; packed training needs a common prefix')
            self._tails[question] = ids[cut:]
        return self._tails[question]

    def answer_ids(self, answer: str) -> list[int]:
        """Return the token ids of an answer followed by eos."""
        if answer not in self._answers:
            ids = self.tokenizer(answer, add_special_tokens=False)['input_ids']
            self._answers[answer] = [int(i) for i in ids] + [self.tokenizer.eos_token_id]
        return self._answers[answer]

    def _row(self, sample: Sample) -> tuple[list[int], list[int], list[int]]:
        """Return a row's ids, targets and segment numbers (0: the shared image prefix)."""
        segments = [(self.tail_ids(text), self.answer_ids(label))
                    for (_, label), text in zip(sample.questions, sample.texts())]
        ids, targets, segs = list(self.prefix), [IGNORE] * len(self.prefix), [0] * len(self.prefix)
        for number, (tail, answer_ids) in enumerate(segments, start=1):
            ids += tail + answer_ids
            targets += [IGNORE] * len(tail) + answer_ids
            segs += [number] * (len(tail) + len(answer_ids))
        return ids, targets, segs

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """
        Return input_ids, labels [B, T] (right-padded), pixel_values and the masks.

        With one question per sample the mask is the usual 2D padding mask; otherwise a boolean
        [B, 1, T, T] mask and position_ids [B, T] describe the packed segments.
        """
        rows = [self._row(sample) for sample in samples]
        length = max(len(ids) for ids, _, _ in rows)
        batch = len(rows)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE, dtype=torch.long)  # [B, T]
        segs = torch.full((batch, length), -1, dtype=torch.long)  # [B, T], -1: padding
        for row, (ids, targets, numbers) in enumerate(rows):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            labels[row, :len(ids)] = torch.tensor(targets)
            segs[row, :len(ids)] = torch.tensor(numbers)
        pixels = self.processor.image_processor(
            images=[sample.image for sample in samples], return_tensors='pt')['pixel_values']
        out = {'input_ids': input_ids, 'labels': labels, 'pixel_values': pixels}  # [B, 3, S, S]
        if all(len(sample.questions) == 1 for sample in samples):
            out['attention_mask'] = (segs >= 0).long()  # [B, T]
            return out
        prefix = len(self.prefix)
        index = torch.arange(length)
        causal = index[None, :] <= index[:, None]  # [T, T]: key j <= query i
        same = (segs[:, None, :] == 0) | (segs[:, None, :] == segs[:, :, None])  # [B, T, T]
        mask = causal & same & (segs[:, :, None] >= 0)
        mask |= torch.eye(length, dtype=torch.bool)  # padding sees itself: no empty rows
        positions = index.repeat(batch, 1)  # [B, T]
        for row, (ids, _, numbers) in enumerate(rows):
            start = prefix
            for number in range(1, max(numbers) + 1):
                width = numbers.count(number)
                positions[row, start:start + width] = torch.arange(prefix, prefix + width)
                start += width
        out['attention_mask'] = mask[:, None]  # [B, 1, T, T]
        out['position_ids'] = positions
        return out


@torch.no_grad()
def first_token_accuracy(model: torch.nn.Module, batcher: QABatcher,
                         samples: Sequence[Sample], batch_size: int = 32) -> dict[str, float]:
    """Return per-task accuracy of the greedy first answer token (a fast in-training check)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        batch = batcher.collate(chunk)
        targets = batch.pop('labels')  # [B, T]
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.cpu()  # [B, T, V]
        answers = (targets != IGNORE) & (targets.roll(1, dims=1) == IGNORE)  # [B, T] first tokens
        for row, sample in enumerate(chunk):
            for (task, _), pos in zip(sample.questions, answers[row].nonzero()[:, 0].tolist()):
                guess = int(logits[row, pos - 1].argmax())
                hits.setdefault(task, []).append(guess == int(targets[row, pos]))
    model.train(was_training)
    return {task: float(np.mean(values)) for task, values in hits.items()}
