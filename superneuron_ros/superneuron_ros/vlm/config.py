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
How to load a model: the settings and their allowed values, without importing torch.

The node validates its parameters with these before anything heavy is imported; loading itself
is :func:`superneuron_ros.vlm.loading.load_model`.
"""

from dataclasses import dataclass

from superneuron_ros.errors import LayerRangeError

# bitsandbytes formats, then torchao int4 weight-only (the backend for machines where bitsandbytes
# fails, e.g. the aarch64 wheel on JetPack 6), then unquantized.
BITSANDBYTES = ('nf4', 'fp4', 'int8')
TORCHAO = ('torchao-int4',)
QUANTIZATIONS = BITSANDBYTES + TORCHAO + ('none',)
# Which linear layers are quantized: 'language' the decoder layers only (vision tower and projector
# stay in the compute dtype: after an early exit they are most of an answer's cost, and 4-bit
# matmuls are slower than the compute dtype), 'all' the vision tower and projector too. The LM head
# is never quantized. 'none' is what a fingerprint records for an unquantized model.
QUANTIZED_MODULES = ('language', 'all')
DEFAULT_QUANTIZE_MODULES = 'language'
DEVICES = ('auto', 'cuda', 'cpu')
DTYPE_NAMES = ('auto', 'float32', 'float16', 'bfloat16')


@dataclass(frozen=True)
class LoadConfig:
    """How to load a model; validated on construction with errors naming the field."""

    model_path: str
    quantization: str = 'nf4'
    device: str = 'auto'
    dtype: str = 'auto'
    exit_layer: int | None = None  # None: the full model with its LM head
    quantize_modules: str = DEFAULT_QUANTIZE_MODULES
    # Start-up checks a user may override, each then reported in the diagnostics of every answer.
    accept_failed_selftest: bool = False  # serve although the quantized-matmul self-test failed
    allow_quantization_mismatch: bool = False  # profiles calibrated under another quantization

    @property
    def quantized_modules(self) -> str:
        """Return what is quantized as a fingerprint records it ('none' when unquantized)."""
        return 'none' if self.quantization == 'none' else self.quantize_modules

    def __post_init__(self) -> None:
        """Check every field against its allowed values."""
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f'quantization must be one of {QUANTIZATIONS}, got '
                             f'{self.quantization!r}')
        if self.device not in DEVICES and not self.device.startswith('cuda:'):
            raise ValueError(f'device must be one of {DEVICES} or cuda:N, got {self.device!r}')
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f'dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}')
        if self.quantize_modules not in QUANTIZED_MODULES:
            raise ValueError(f'quantize_modules must be one of {QUANTIZED_MODULES}, got '
                             f'{self.quantize_modules!r}')
        if self.exit_layer is not None and self.exit_layer < 0:
            raise LayerRangeError(f'exit_layer must be >= 0, got {self.exit_layer}')
