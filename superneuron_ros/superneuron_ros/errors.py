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

"""Exceptions raised by the core; every message says what to do about it."""


class SuperneuronError(Exception):
    """Base class of every error the core raises on purpose."""


class ModelLoadError(SuperneuronError):
    """A model folder is missing, incomplete or cannot be read."""


class UnsupportedArchitectureError(ModelLoadError):
    """The model folder holds an architecture this package does not support."""


class LayerRangeError(SuperneuronError, ValueError):
    """An exit layer or a layer index lies outside the model's decoder layers."""


class QuantizationError(SuperneuronError):
    """bitsandbytes is missing, or it failed its start-up self-test."""


class DeviceError(SuperneuronError):
    """The requested device is not available (for example CUDA on a machine without it)."""


class DataError(SuperneuronError, ValueError):
    """A task file or a labelled set is malformed, empty, or names unknown labels or images."""


class ImageError(SuperneuronError, ValueError):
    """An image cannot be used: wrong shape, dtype, encoding or size."""


class VisionSideError(SuperneuronError, ValueError):
    """A vision side (the processor's resolution) the model's family or processor cannot take."""


class ProfileError(SuperneuronError):
    """A profile file is missing, corrupt, or of an unknown format version."""


class ProfileMismatchError(ProfileError):
    """A profile was calibrated on another model than the one loaded."""


class UnknownTaskError(SuperneuronError, KeyError):
    """A request names a task that is not loaded."""

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0]) if self.args else ''
