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
Read-only facts about a checkpoint on disk: the tensors a truncated model needs, and their hash.

The hash identifies the weights that a profile's answers depend on (vision tower, projector,
embeddings and decoder layers 0..L) straight from the safetensors files' bytes, without loading the
model, so it is the same whatever quantization or device the model is later loaded with.
"""

import hashlib
import json
from pathlib import Path
import re
import struct

# Decoder layer keys in the checkpoints of the supported families, in the layouts transformers
# writes (v5 saves several families in their older layout), e.g. language_model.model.layers.3.
# (LLaVA), model.layers.3. (Qwen2-VL), model.language_model.layers.3. (Qwen3-VL),
# model.text_model.layers.3. (SmolVLM). Vision tower blocks never match: the pattern is anchored.
DECODER_LAYER = re.compile(
    r'^(?:model\.)?(?:language_model\.|text_model\.)?(?:model\.)?layers\.(\d+)\.')
LM_HEAD = re.compile(r'(?:^|\.)lm_head\.')


def safetensors_header(path: Path) -> tuple[dict, int]:
    """Return a safetensors file's header and the offset where its data starts."""
    with open(path, 'rb') as handle:
        (length,) = struct.unpack('<Q', handle.read(8))
        header = json.loads(handle.read(length))
    return header, 8 + length


def tensor_layer(key: str) -> int | None:
    """Return the decoder layer a checkpoint key belongs to, or None for other tensors."""
    match = DECODER_LAYER.search(key)
    return int(match.group(1)) if match else None


def weights_hash(folder: Path, exit_layer: int, chunk: int = 1 << 24) -> str:
    """
    Hash (sha256) the tensors a model truncated at `exit_layer` is built from.

    Covers every tensor except the LM head and decoder layers deeper than `exit_layer`; each
    tensor contributes its name, dtype, shape and raw bytes, in sorted key order.
    """
    digest = hashlib.sha256()
    entries = []
    for path in sorted(Path(folder).glob('*.safetensors')):
        header, data_start = safetensors_header(path)
        for key, info in header.items():
            if key == '__metadata__' or LM_HEAD.search(key):
                continue
            layer = tensor_layer(key)
            if layer is not None and layer > exit_layer:
                continue
            entries.append((key, info, path, data_start))
    for key, info, path, data_start in sorted(entries, key=lambda entry: entry[0]):
        begin, end = info['data_offsets']
        digest.update(f'{key}|{info["dtype"]}|{info["shape"]}|'.encode())
        with open(path, 'rb') as handle:
            handle.seek(data_start + begin)
            remaining = end - begin
            while remaining > 0:
                block = handle.read(min(chunk, remaining))
                digest.update(block)
                remaining -= len(block)
    return digest.hexdigest()
