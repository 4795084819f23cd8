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
The model zoo: tiny and preset-shaped models of every supported VLM family, built in code.

Each family gets a real (word-piece) tokenizer built with ``tokenizers``, its real processor and
image processor classes configured small, and a config whose token ids are wired to that
tokenizer. :func:`build_model_folder` writes a folder that the Auto classes load back offline.
"""

from superneuron_ros.lab.zoo.build import (build_model_folder, build_processor, count_parameters,
                                           on_meta, random_model, resolve_config)
from superneuron_ros.lab.zoo.configs import tiny_config, TINY_IMAGE_SIZE
from superneuron_ros.lab.zoo.presets import get_preset, Preset, PRESETS
from superneuron_ros.lab.zoo.processors import (image_processor_for_config,
                                                processor_unavailable_reason, save_processor_parts)
from superneuron_ros.lab.zoo.text import build_tokenizer, FAMILIES

__all__ = [
    'FAMILIES', 'PRESETS', 'Preset', 'TINY_IMAGE_SIZE', 'build_model_folder', 'build_processor',
    'build_tokenizer', 'count_parameters', 'get_preset', 'image_processor_for_config', 'on_meta',
    'processor_unavailable_reason', 'random_model', 'resolve_config', 'save_processor_parts',
    'tiny_config',
]
