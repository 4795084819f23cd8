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
K prompts about one image as one packed sequence: a shared prefix, then each prompt's own tokens.

Two steps make several questions about one frame cost little more than one:

1. **One preprocessing.** The processor runs once, on the image and the first prompt; it expands
   the image placeholder into the image's tokens. Every prompt is tokenised alone and its
   placeholder is replaced by the same expanded block (:func:`expand_like`), so the K token
   sequences equal what the processor would give for each prompt, without running the image
   processor K times.
2. **Shared prefix.** The K sequences share their first P tokens (chat header, every image token,
   whatever follows identically). :func:`pack` lays them out as ``prefix + rest_1 + ... + rest_K``
   in one row; :func:`block_mask` lets each prompt's own tokens attend to the prefix and to their
   own earlier tokens only, and each token keeps the position it has in its own sequence. One
   forward pass then computes the prefix once and every prompt exactly as if it ran alone; the
   keys and values of the prefix are shared by all prompts inside that pass, layer by layer, so
   the pass can stop after any layer (the per-call depth and the anytime exit).

Packing needs no padding, so the result does not depend on the tokenizer's padding side.
"""

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Packed:
    """One packed sequence of K prompts about one image."""

    input_ids: torch.Tensor  # [1, T] long
    positions: torch.Tensor  # [1, T] long (1-D rotary), or [3, 1, T] (M-RoPE)
    mask: torch.Tensor  # [1, 1, T, T] additive float mask (0: attend, dtype min: masked)
    answer_positions: torch.Tensor  # [K] long: index in the row of each prompt's last token
    prefix_length: int  # P: tokens computed once for all prompts

    @property
    def length(self) -> int:
        """Return the length T of the packed row."""
        return int(self.input_ids.shape[1])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def expand_like(raw_first: Sequence[int], expanded_first: Sequence[int],
                raw: Sequence[int]) -> list[int] | None:
    """
    Return `raw` with its image placeholder expanded as the processor expanded the first prompt's.

    ``raw_first`` and ``expanded_first`` are the first prompt tokenised alone and by the
    processor; they differ by one block (the placeholder and its expansion). `raw` is another
    prompt tokenised alone. Returns None when `raw` does not start like the first prompt up to
    the end of its placeholder (a template with differing text before the image): the caller
    then runs the processor for that prompt.
    """
    head = _common_prefix(raw_first, expanded_first)
    tail = _common_prefix(raw_first[head:][::-1], expanded_first[head:][::-1])
    placeholder_end = len(raw_first) - tail
    block = list(expanded_first[head:len(expanded_first) - tail])
    if list(raw[:placeholder_end]) != list(raw_first[:placeholder_end]):
        return None
    return list(expanded_first[:head]) + block + list(raw[placeholder_end:])


def shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """Return P: the common prefix of all sequences, leaving each at least one token of its own."""
    common = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for other in sequences[1:]:
        common = min(common, _common_prefix(first, other))
    return max(common, 0)


def block_mask(prefix: int, own: Sequence[int], dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """
    Return the additive mask [1, 1, T, T] of a packed row: causal prefix, then private blocks.

    Row i may attend to column j when both lie in the prefix with j <= i, or when i lies in a
    prompt's own block and j in the prefix or in the same block with j <= i.
    """
    total = prefix + sum(own)
    block = torch.zeros(total, dtype=torch.long, device=device)  # 0: prefix, k + 1: prompt k
    start = prefix
    for k, n in enumerate(own):
        block[start:start + n] = k + 1
        start += n
    index = torch.arange(total, device=device)
    causal = index[None, :] <= index[:, None]  # [T, T]
    same = (block[:, None] == block[None, :]) | (block[None, :] == 0)
    allowed = causal & same
    mask = torch.zeros((total, total), dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]  # [1, 1, T, T]


def pack(sequences: Sequence[Sequence[int]], positions: Sequence[torch.Tensor],
         dtype: torch.dtype, device: torch.device) -> Packed:
    """
    Pack K token sequences and their own positions [R, T_k] into one row.

    Each prompt's tokens after the shared prefix keep the positions they have in their own
    sequence, so rotary embeddings (1-D or M-RoPE) see exactly what an unshared pass sees.
    """
    prefix = shared_length(sequences)
    ids = list(sequences[0][:prefix])
    parts = [positions[0][:, :prefix]]
    answers = []
    own = []
    for sequence, position in zip(sequences, positions):
        ids.extend(sequence[prefix:])
        parts.append(position[:, prefix:])
        own.append(len(sequence) - prefix)
        answers.append(len(ids) - 1)
    packed_positions = torch.cat(parts, dim=1).to(device)  # [R, T]
    if packed_positions.shape[0] > 1:
        packed_positions = packed_positions[:, None, :]  # M-RoPE: [3, 1, T]
    return Packed(input_ids=torch.tensor([ids], dtype=torch.long, device=device),
                  positions=packed_positions, mask=block_mask(prefix, own, dtype, device),
                  answer_positions=torch.tensor(answers, dtype=torch.long, device=device),
                  prefix_length=prefix)
