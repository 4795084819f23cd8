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

"""What a benchmark run measures: a frozen, validated configuration shared by the CLI and tests."""

from dataclasses import asdict, dataclass
import os
from pathlib import Path
from typing import Any

from superneuron_ros.vlm.config import LoadConfig, QUANTIZATIONS

AUTO = 'auto'
DEFAULT_TASK_COUNTS = (1, 2, 4, 8)
MAX_TASKS = 9  # generated yes/no tasks available (see quick_profiles.bench_tasks)


def default_cache_dir() -> Path:
    """Return where preset models are built: $XDG_CACHE_HOME/superneuron_ros/presets."""
    root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(root) / 'superneuron_ros' / 'presets'


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')


@dataclass(frozen=True)
class BenchConfig:
    """
    Inputs of one benchmark run; validated on construction with errors naming the field.

    Exactly one of `model_path` (a local model folder) and `preset` (a zoo shape with random
    weights, built into `cache_dir` on first use) is given. `vision_side` bounds what the
    processor resizes images to (Qwen: at most side x side pixels; SmolVLM: the longest edge, in
    512 px tiles; fixed for LLaVA). Sweeps: `layers` (exit layers; None picks a few, () skips),
    `sizes` (vision sides, with square frames of that side; None picks three around the main
    one, () skips) and `task_counts` (tasks asked about one frame; () skips).
    """

    model_path: str | None = None
    preset: str | None = None
    cache_dir: str | None = None
    exit_layer: int = 1
    quantization: str = AUTO  # auto: nf4 on CUDA, none elsewhere
    quantize_modules: str = 'language'  # see superneuron_ros.vlm.config.QUANTIZED_MODULES
    device: str = AUTO
    dtype: str = AUTO
    image_size: tuple[int, int] | None = None  # (height, width); None: vision_side or nominal
    vision_side: int | None = None  # bound of the processor's resize (Qwen, SmolVLM); None: as is
    tasks: int = 1  # tasks answered per frame in the main measurement
    repeats: int = 5
    warmup: int = 1
    max_new_tokens: int = 3  # (a): a one-word answer, a full stop and the end-of-turn token
    neurons: int = 5  # k of the benchmark profiles
    calibration_images: int = 8
    layers: tuple[int, ...] | None = None
    sizes: tuple[int, ...] | None = None
    task_counts: tuple[int, ...] = DEFAULT_TASK_COUNTS
    sweep_repeats: int = 3
    memory: bool = False  # peak memory of full / truncated x nf4 / none, in subprocesses
    memory_only: bool = False  # no timing: meta sizes only (and the probes with `memory`)
    threads: int | None = None
    torch_profile: int = 0  # list the top N operators of one super-neuron answer
    work_dir: str | None = None  # where benchmark profiles are written (default: a temp dir)
    seed: int = 0
    loaded: bool = True  # time a shallow task alone-loaded vs with deep profiles loaded
    profiles: str | None = None  # real profiles (a folder) for that, instead of quick ones
    accuracy_scenes: int = 0  # score `profiles` on that many fresh scenes (anytime exits)

    def __post_init__(self) -> None:
        """Check every field; raise ValueError naming the offending one."""
        if (self.model_path is None) == (self.preset is None):
            raise ValueError('give exactly one of model_path (a local model folder) and preset '
                             '(a model shape with random weights)')
        if not isinstance(self.exit_layer, int):
            raise ValueError(f'exit_layer must be an integer >= 0, got {self.exit_layer!r}')
        if self.quantization not in QUANTIZATIONS + (AUTO,):
            raise ValueError(f'quantization must be one of {QUANTIZATIONS + (AUTO,)}, got '
                             f'{self.quantization!r}')
        self.load_config()  # device, dtype and exit layer: checked as every model load checks them
        if self.image_size is not None:
            size = tuple(int(v) for v in self.image_size)
            if len(size) != 2 or not all(8 <= v <= 4096 for v in size):
                raise ValueError(f'image_size must be (height, width) within 8..4096 pixels, '
                                 f'got {self.image_size!r}')
            object.__setattr__(self, 'image_size', size)
        for name in ('repeats', 'max_new_tokens', 'neurons', 'sweep_repeats'):
            _positive(name, getattr(self, name))
        if not 1 <= self.tasks <= MAX_TASKS:
            raise ValueError(f'tasks must lie in 1..{MAX_TASKS}, got {self.tasks!r}')
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f'warmup must be an integer >= 0, got {self.warmup!r}')
        if self.calibration_images < 4:
            raise ValueError(f'calibration_images must be at least 4 (2 per label), got '
                             f'{self.calibration_images!r}')
        for name in ('layers', 'sizes', 'task_counts'):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(sorted({int(v) for v in value}))
            if any(v < (0 if name == 'layers' else 1) for v in value):
                kind = 'non-negative' if name == 'layers' else 'positive'
                raise ValueError(f'{name} must hold {kind} integers, got '
                                 f'{getattr(self, name)!r}')
            object.__setattr__(self, name, value)
        if self.task_counts and max(self.task_counts) > MAX_TASKS:
            raise ValueError(f'task_counts must lie in 1..{MAX_TASKS}, got {self.task_counts!r}')
        if self.sizes and not all(8 <= v <= 4096 for v in self.sizes):
            raise ValueError(f'sizes must lie within 8..4096 pixels, got {self.sizes!r}')
        if self.vision_side is not None and not 28 <= self.vision_side <= 8192:
            raise ValueError(f'vision_side must lie within 28..8192 pixels, got '
                             f'{self.vision_side!r}')
        if self.threads is not None:
            _positive('threads', self.threads)
        if not isinstance(self.accuracy_scenes, int) or self.accuracy_scenes < 0:
            raise ValueError(f'accuracy_scenes must be an integer >= 0, got '
                             f'{self.accuracy_scenes!r}')
        if self.accuracy_scenes and self.profiles is None:
            raise ValueError('accuracy_scenes scores real profiles: give profiles too')
        if not isinstance(self.torch_profile, int) or self.torch_profile < 0:
            raise ValueError(f'torch_profile must be an integer >= 0, got {self.torch_profile!r}')

    def load_config(self, folder: str | None = None,
                    quantization: str | None = None) -> LoadConfig:
        """Return how the run loads its model (`quantization` resolves 'auto'; none by default)."""
        quantization = quantization or (self.quantization if self.quantization != AUTO
                                        else 'none')
        return LoadConfig(folder or self.model_path or '', quantization=quantization,
                          device=self.device, dtype=self.dtype, exit_layer=self.exit_layer,
                          quantize_modules=self.quantize_modules)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able mapping."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}
