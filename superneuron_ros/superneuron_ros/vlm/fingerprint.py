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
from superneuron_ros.vlm.config import DEFAULT_QUANTIZE_MODULES, QUANTIZATIONS
from superneuron_ros.vlm.config import QUANTIZED_MODULES
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.hashcache import cached_weights_hash


# The fields that say how the weights were quantized, not which weights they are. A profile run
# under another quantization is refused unless the user allows it (allow_quantization_mismatch).
QUANTIZATION_FIELDS = ('quantization', 'quantized_modules')


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class ModelFingerprint:
    """
    What a profile's neurons depend on: the model's shape, quantization and early weights.

    ``weights_hash`` is a hex digest of the checkpoint tensors of decoder layers 0..hash_layer plus
    embeddings, vision tower and projector, computed by the loading code. ``quantized_modules``
    says which linear layers were quantized ('language' or 'all', see
    :data:`~superneuron_ros.vlm.config.QUANTIZED_MODULES`; 'none' when unquantized). Profiles
    written before it was recorded load with 'all': bitsandbytes then quantized the vision tower
    and projector too.
    """

    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    quantization: str
    weights_hash: str
    hash_layer: int
    quantized_modules: str = 'all'

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
        if self.quantization == 'none':
            object.__setattr__(self, 'quantized_modules', 'none')
        elif self.quantized_modules not in QUANTIZED_MODULES:
            raise ProfileError(f'fingerprint quantized_modules must be one of '
                               f'{QUANTIZED_MODULES}, got {self.quantized_modules!r}')

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able mapping."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'ModelFingerprint':
        """
        Build a fingerprint from `to_dict` output; raise ProfileError on missing fields.

        Fields added after the first format (those with a default) may be absent.
        """
        if not isinstance(data, Mapping):
            raise ProfileError(f'fingerprint must be a mapping, got {type(data).__name__}')
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        missing = [f.name for f in fields
                   if f.name not in data and f.default is dataclasses.MISSING]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ProfileError(f'fingerprint has missing fields {missing} / unknown fields '
                               f'{unknown}; expected {names}')
        return cls(**{name: data[name] for name in names if name in data})

    def differences(self, other: 'ModelFingerprint') -> list[str]:
        """Return one 'field: mine vs other' line per field that differs."""
        return [f'{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}'
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]

    def quantization_differences(self, other: 'ModelFingerprint') -> list[str]:
        """Return the differences that are only about how the weights are quantized."""
        return [line for line in self.differences(other)
                if line.split(':', 1)[0] in QUANTIZATION_FIELDS]

    def with_quantization_of(self, other: 'ModelFingerprint') -> 'ModelFingerprint':
        """Return this fingerprint with `other`'s quantization fields."""
        return dataclasses.replace(self, **{name: getattr(other, name)
                                            for name in QUANTIZATION_FIELDS})

    def describe(self) -> str:
        """Return a one-line human description of the model."""
        return (f'{self.architecture} ({self.model_type}) with {self.num_layers} layers, '
                f'{self.quantization}, weights {self.weights_hash[:8]} '
                f'(layers 0..{self.hash_layer})')


def model_fingerprint(folder: Path, config: object, quantization: str, hash_layer: int,
                      quantized_modules: str = DEFAULT_QUANTIZE_MODULES) -> ModelFingerprint:
    """
    Return the ModelFingerprint of a checkpoint for profiles with exit layer `hash_layer`.

    The weights hash is read from the hash cache when the files are unchanged (see
    :mod:`superneuron_ros.vlm.hashcache`).
    """
    text = family_for(config.model_type).text_config(config)
    architectures = getattr(config, 'architectures', None) or [type(config).__name__]
    return ModelFingerprint(
        architecture=architectures[0], model_type=config.model_type,
        num_layers=int(text.num_hidden_layers), hidden_size=int(text.hidden_size),
        intermediate_size=int(text.intermediate_size), quantization=quantization,
        weights_hash=cached_weights_hash(Path(folder), hash_layer), hash_layer=int(hash_layer),
        quantized_modules=quantized_modules)
