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

"""Loading refuses checkpoints with missing or wrong-shape weights, in every family."""

from pathlib import Path
import shutil

import pytest
from safetensors.torch import load_file, save_file
from superneuron_ros.errors import ModelLoadError, QuantizationError
from superneuron_ros.lab.zoo import FAMILIES
from superneuron_ros.vlm.checkpoint import tensor_layer
from superneuron_ros.vlm.config import LoadConfig
from superneuron_ros.vlm.loading import load_model, resolve_dtype
import torch
from zoo_fixtures import zoo_folder  # noqa: F401


def _damaged_copy(source: Path, out: Path, how: str, layer: int = 0) -> str:
    """Copy a model folder and damage one weight of decoder layer `layer`; return its key."""
    shutil.copytree(source, out)
    path = next(out.glob('*.safetensors'))
    tensors = load_file(path)
    key = next(k for k in sorted(tensors)
               if tensor_layer(k) == layer and k.endswith('mlp.down_proj.weight'))
    value = tensors.pop(key)
    if how == 'rename':
        tensors[key.replace('down_proj', 'down_projection')] = value
    else:
        tensors[key] = value[:, :-1].contiguous()
    save_file(tensors, path, metadata={'format': 'pt'})
    return key


def _config(folder: Path, exit_layer: int | None, quantization: str = 'none') -> LoadConfig:
    return LoadConfig(str(folder), quantization=quantization, device='cpu', exit_layer=exit_layer)


@pytest.mark.parametrize('how', ['rename', 'reshape'])
@pytest.mark.parametrize('family', FAMILIES)
def test_missing_or_wrong_shape_weight_is_refused(tmp_path, zoo_folder, family, how):  # noqa: F811
    """A weight of layer 0 missing or reshaped fails truncated and full loads, naming it."""
    key = _damaged_copy(zoo_folder(family), tmp_path / family, how)
    layer_key = key[key.index('layers.0.'):]  # the prefix differs between checkpoint and model
    for exit_layer in (1, None):
        with pytest.raises(ModelLoadError) as error:
            load_model(_config(tmp_path / family, exit_layer))
        message = str(error.value)
        assert layer_key in message
        assert ('missing' if how == 'rename' else 'wrong shape') in message


@pytest.mark.parametrize('family', FAMILIES)
def test_truncated_load_accepts_absent_deeper_layers_and_head(zoo_folder, family):  # noqa: F811
    """The checkpoint's deeper layers and LM head are the one accepted difference."""
    loaded = load_model(_config(zoo_folder(family), 1))
    assert loaded.loaded_layers == 2


def test_damage_beyond_the_exit_layer_is_not_read(tmp_path, zoo_folder):  # noqa: F811
    """A layer the truncated model never builds may be anything; the full load refuses it."""
    _damaged_copy(zoo_folder('llava'), tmp_path / 'llava', 'rename', layer=3)
    assert load_model(_config(tmp_path / 'llava', 1)).loaded_layers == 2
    with pytest.raises(ModelLoadError, match='layers.3.mlp.down_proj.weight'):
        load_model(_config(tmp_path / 'llava', None))


@pytest.mark.parametrize('quantization', ['nf4', 'torchao-int4'])
def test_quantized_loads_check_the_weights_too(tmp_path, zoo_folder, quantization):  # noqa: F811
    """The refusal holds when the weights are quantized while they are read."""
    _damaged_copy(zoo_folder('qwen2_vl'), tmp_path / 'qwen', 'rename')
    with pytest.raises(ModelLoadError, match='missing'):
        load_model(_config(tmp_path / 'qwen', 1, quantization))


def test_dtype_follows_the_backend():
    """The torchao int4 backend computes in bfloat16; float32 is refused with the reason."""
    cpu = torch.device('cpu')
    assert resolve_dtype('auto', cpu) == torch.float32
    assert resolve_dtype('auto', cpu, 'torchao-int4') == torch.bfloat16
    with pytest.raises(QuantizationError, match='bfloat16'):
        resolve_dtype('float32', cpu, 'torchao-int4')
