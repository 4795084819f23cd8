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

"""Checkpoint facts: decoder-layer keys of every family; a weights hash scoped to layers 0..L."""

from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file
from superneuron_ros.lab.zoo import build_model_folder, FAMILIES
from superneuron_ros.vlm.checkpoint import safetensors_header, tensor_layer, weights_hash


@pytest.mark.parametrize('family', FAMILIES)
def test_decoder_layer_keys_found_in_every_family(tmp_path, family):
    """Every decoder layer is recognised; no vision-tower block is taken for one."""
    folder = build_model_folder(tmp_path / family, family, seed=0)
    keys = [key for path in folder.glob('*.safetensors')
            for key in safetensors_header(path)[0] if key != '__metadata__']
    layers = {tensor_layer(key) for key in keys} - {None}
    assert layers == {0, 1, 2, 3}
    for key in keys:
        if tensor_layer(key) is not None:
            assert 'vision' not in key and 'visual' not in key, key


def _edit(folder: Path, predicate) -> None:
    """Add 1 to the first tensor whose key satisfies `predicate`, in place."""
    path = next(folder.glob('*.safetensors'))
    tensors = load_file(path)
    key = sorted(k for k in tensors if predicate(k))[0]
    tensors[key] = tensors[key] + 1
    save_file(tensors, path, metadata={'format': 'pt'})


def test_weights_hash_covers_exactly_layers_up_to_the_exit(tmp_path):
    """The hash at L changes with layers <= L and shared parts, never with deeper layers."""
    folder = build_model_folder(tmp_path / 'llava', 'llava', seed=0)
    before = {layer: weights_hash(folder, layer) for layer in range(4)}
    assert len(set(before.values())) == 4
    _edit(folder, lambda key: tensor_layer(key) == 2)
    after = {layer: weights_hash(folder, layer) for layer in range(4)}
    assert after[0] == before[0] and after[1] == before[1]
    assert after[2] != before[2] and after[3] != before[3]
    _edit(folder, lambda key: 'lm_head' in key)
    assert weights_hash(folder, 3) == after[3]
    _edit(folder, lambda key: 'vision' in key)
    assert weights_hash(folder, 0) != after[0]
