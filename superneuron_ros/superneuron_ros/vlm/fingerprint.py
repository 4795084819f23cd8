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

"""A model's fingerprint: what a profile's neurons depend on, checked before a profile is used."""

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from superneuron_ros.errors import ProfileError
from superneuron_ros.vlm.checkpoint import weights_hash
from superneuron_ros.vlm.config import QUANTIZATIONS
from superneuron_ros.vlm.families import family_for


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class ModelFingerprint:
    """
    What a profile's neurons depend on: the model's shape, quantization and early weights.

    ``weights_hash`` is a hex digest of the checkpoint tensors of decoder layers 0..hash_layer plus
    embeddings, vision tower and projector, computed by the loading code.
    """

    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    quantization: str
    weights_hash: str
    hash_layer: int

    def __post_init__(self) -> None:
        """Validate the fields; raise ProfileError naming the bad one."""
        for name in ('architecture', 'model_type', 'weights_hash'):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ProfileError(f'fingerprint field {name} must be a non-empty string, '
                                   f'got {value!r}')
        try:
            int(self.weights_hash, 16)
        except ValueError:
            raise ProfileError(f'fingerprint weights_hash must be hexadecimal, got '
                               f'{self.weights_hash!r}') from None
        for name in ('num_layers', 'hidden_size', 'intermediate_size', 'hash_layer'):
            value = getattr(self, name)
            if not _is_int(value) or value < (0 if name == 'hash_layer' else 1):
                raise ProfileError(f'fingerprint field {name} must be a non-negative integer '
                                   f'(layers and sizes at least 1), got {value!r}')
            object.__setattr__(self, name, int(value))
        if self.hash_layer >= self.num_layers:
            raise ProfileError(f'fingerprint hash_layer {self.hash_layer} must be below '
                               f'num_layers {self.num_layers}')
        if self.quantization not in QUANTIZATIONS:
            raise ProfileError(f'fingerprint quantization must be one of {QUANTIZATIONS}, got '
                               f'{self.quantization!r}')
        object.__setattr__(self, 'weights_hash', self.weights_hash.lower())

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able mapping."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'ModelFingerprint':
        """Build a fingerprint from `to_dict` output; raise ProfileError on missing fields."""
        if not isinstance(data, Mapping):
            raise ProfileError(f'fingerprint must be a mapping, got {type(data).__name__}')
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ProfileError(f'fingerprint has missing fields {missing} / unknown fields '
                               f'{unknown}; expected {names}')
        return cls(**{name: data[name] for name in names})

    def differences(self, other: 'ModelFingerprint') -> list[str]:
        """Return one 'field: mine vs other' line per field that differs."""
        return [f'{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}'
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]

    def describe(self) -> str:
        """Return a one-line human description of the model."""
        return (f'{self.architecture} ({self.model_type}) with {self.num_layers} layers, '
                f'{self.quantization}, weights {self.weights_hash[:8]} '
                f'(layers 0..{self.hash_layer})')


def model_fingerprint(folder: Path, config: object, quantization: str,
                      hash_layer: int) -> ModelFingerprint:
    """Return the ModelFingerprint of a checkpoint for profiles with exit layer `hash_layer`."""
    text = family_for(config.model_type).text_config(config)
    architectures = getattr(config, 'architectures', None) or [type(config).__name__]
    return ModelFingerprint(
        architecture=architectures[0], model_type=config.model_type,
        num_layers=int(text.num_hidden_layers), hidden_size=int(text.hidden_size),
        intermediate_size=int(text.intermediate_size), quantization=quantization,
        weights_hash=weights_hash(Path(folder), hash_layer), hash_layer=int(hash_layer))
