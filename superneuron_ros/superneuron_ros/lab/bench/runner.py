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
Run a whole benchmark: resolve the model, calibrate benchmark profiles, measure, size memory.

The phases, each releasing what it loaded before the next:

1. sizes on the meta device (``memory_only`` stops here, needing no weights, unless ``memory``
   asks for the probes of step 4);
2. the model truncated at the deepest layer needed: quick benchmark profiles
   (:mod:`~superneuron_ros.lab.bench.quick_profiles`), then the exit-layer sweep on views of it;
3. :meth:`Runtime.load` of the main profiles (the node's own loading) and, when both fit in
   memory, the full model beside it: (a)-(d) interleaved, the task-count and size sweeps;
   otherwise (c), (d) and the sweeps first, then the full model alone for (a) and (b);
4. optional peak-memory probes in subprocesses (full / truncated, nf4 / none).
"""

from dataclasses import dataclass
import gc
import logging
import os
from pathlib import Path
import platform
import shutil
import tempfile
import time
from typing import Any

from superneuron_ros.errors import LayerRangeError, ModelLoadError
from superneuron_ros.lab.bench import measure
from superneuron_ros.lab.bench.config import AUTO, BenchConfig, default_cache_dir
from superneuron_ros.lab.bench.memory import (available_bytes, meta_sizes, peak_rss_bytes,
                                              probe_memory, rss_bytes)
from superneuron_ros.lab.bench.paths import FullModelPaths, image_tokens, set_vision_side
from superneuron_ros.lab.bench.quick_profiles import bench_tasks, quick_profiles
from superneuron_ros.lab.bench.report import evaluate_targets
from superneuron_ros.lab.bench.timing import Clock
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.families import family_for
from superneuron_ros.vlm.loading import (check_model_folder, load_model, LoadConfig, read_config,
                                         resolve_device, resolve_dtype, with_exit_layer)
from superneuron_ros.vlm.selftest import run_selftest
from superneuron_ros.vlm.sizing import model_sizes
import torch

LOG = logging.getLogger(__name__)
SCHEMA_VERSION = 1
FIT_FRACTION = 0.8  # share of the available memory a benchmark lets its models take
DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe the machine and software the figures come from."""
    import psutil
    import transformers
    info: dict[str, Any] = {
        'cpu': _cpu_name(), 'logical_cpus': os.cpu_count(),
        'memory_bytes': int(psutil.virtual_memory().total),
        'available_bytes': available_bytes(), 'load_average': list(os.getloadavg()),
        'torch_threads': torch.get_num_threads(), 'python': platform.python_version(),
        'torch': torch.__version__, 'transformers': transformers.__version__,
        'device': str(device)}
    try:
        import bitsandbytes
        info['bitsandbytes'] = bitsandbytes.__version__
    except ImportError:
        info['bitsandbytes'] = None
    if device.type == 'cuda':
        info['cuda_device'] = torch.cuda.get_device_name(device)
        info['cuda_memory_bytes'] = int(torch.cuda.get_device_properties(device).total_memory)
    return info


def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_config(config: BenchConfig) -> tuple[Any, str | None]:
    """Return the model's config and its folder (None for a preset not built yet)."""
    if config.model_path is not None:
        folder = check_model_folder(config.model_path)
        return read_config(folder), str(folder)
    from superneuron_ros.lab.zoo import get_preset
    folder = Path(config.cache_dir or default_cache_dir()) / config.preset
    if (folder / 'zoo.json').is_file():
        return read_config(folder), str(folder)
    return get_preset(config.preset).config(), None


def estimated_bytes(size: Any, quantization: str, dtype: torch.dtype) -> float:
    """Estimate the resident bytes of a model of `size` loaded with this quantization and dtype."""
    return size.estimate_bytes(quantization, dtype_bytes=DTYPE_BYTES.get(dtype, 4))


def ensure_folder(config: BenchConfig, folder: str | None, model_cfg: Any, quantization: str,
                  dtype: torch.dtype) -> str:
    """Return the model folder, building the preset there first if needed (random weights)."""
    full, _ = model_sizes(model_cfg, 0)
    need = estimated_bytes(full, quantization, dtype)
    if folder is None:  # building keeps the whole model in float16 once
        need = max(need, 2.0 * full.total)
    if need > FIT_FRACTION * available_bytes():
        raise ModelLoadError(
            f'{config.preset or config.model_path} needs about {need / 2**30:.1f} GiB to load in '
            f'{str(dtype).replace("torch.", "")}, more than this machine can give '
            f'({available_bytes() / 2**30:.1f} GiB available); size it with --memory-only, '
            'use a smaller preset, or run on a machine with more memory')
    if folder is not None:
        return folder
    from superneuron_ros.lab.zoo import build_model_folder, get_preset
    out = Path(config.cache_dir or default_cache_dir()) / config.preset
    LOG.info('building the %s preset with random weights (float16) in %s', config.preset, out)
    build_model_folder(out, get_preset(config.preset).family, preset=config.preset,
                       dtype=torch.float16, seed=config.seed)
    return str(out)


def resolve_layers(config: BenchConfig, num_layers: int) -> list[int]:
    """Return the exit layers of the sweep: the given ones, or 0, 1, L, N/4, N/2, N-1."""
    if config.layers is None:
        chosen = {0, 1, config.exit_layer, num_layers // 4, num_layers // 2, num_layers - 1}
    else:
        chosen = set(config.layers)
    bad = [layer for layer in chosen if not 0 <= layer < num_layers]
    if bad:
        raise LayerRangeError(f'sweep layers {sorted(bad)} are out of range: the model has '
                              f'{num_layers} decoder layers (valid: 0..{num_layers - 1})')
    return sorted(layer for layer in chosen if layer < num_layers)


def fits_beside(need: float) -> bool:
    """Return whether a model of `need` bytes fits in the memory still available."""
    return need < FIT_FRACTION * available_bytes()


def _free_memory() -> None:
    """Collect garbage and return cached CUDA memory (drop references first)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _profile_one_answer(runtime: Runtime, image: Any, names: list[str], top: int) -> list[dict]:
    """Return the `top` operators of one super-neuron answer by self CPU time (torch.profiler)."""
    from torch.profiler import profile, ProfilerActivity
    activities = [ProfilerActivity.CPU]
    if runtime.loaded.device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        runtime.answer(image, names)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{'name': e.key, 'calls': e.count, 'self_cpu_ms': e.self_cpu_time_total / 1e3,
             'cpu_total_ms': e.cpu_time_total / 1e3} for e in events[:top]]


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark described by `config` and return its report (JSON-able)."""
    started = time.perf_counter()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    model_cfg, folder = model_config(config)
    family = family_for(model_cfg.model_type)
    num_layers = family.text_config(model_cfg).num_hidden_layers
    if not 0 <= config.exit_layer < num_layers:
        raise LayerRangeError(f'exit layer {config.exit_layer} is out of range: the model has '
                              f'{num_layers} decoder layers (valid: 0..{num_layers - 1})')
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    if device.type == 'cpu' and dtype == torch.float16:
        LOG.warning('float16 matrix products are very slow on most CPUs; prefer bfloat16 or '
                    'float32 there')
    quantization = config.quantization
    if quantization == AUTO:
        quantization = 'nf4' if device.type == 'cuda' else 'none'
    report: dict[str, Any] = {
        'schema': SCHEMA_VERSION, 'config': config.to_dict(), 'machine': machine_info(device),
        'model': {'path': folder, 'preset': config.preset, 'family': family.name,
                  'num_layers': num_layers, 'quantization': quantization,
                  'dtype': str(dtype).replace('torch.', '')},
        'memory': {'meta': meta_sizes(model_cfg, config.exit_layer)}}
    if not config.memory_only or config.memory:
        folder = ensure_folder(config, folder, model_cfg, quantization, dtype)
        report['model']['path'] = folder
        image_size = config.image_size or _nominal_size(config, folder)
        report['model']['image_size'] = list(image_size)
        report['model']['vision_side'] = config.vision_side
    if not config.memory_only:
        run = _Run(config, model_cfg, family.name, num_layers, folder, quantization, dtype,
                   image_size, Clock(device))
        work = Path(config.work_dir or tempfile.mkdtemp(prefix='superneuron-bench-'))
        try:
            _time_everything(run, report, work)
        finally:
            if config.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
    if config.memory:
        report['memory']['probes'] = _probes(config, folder, image_size)
    report['machine']['load_average_after'] = list(os.getloadavg())
    report['targets'] = evaluate_targets(report)
    report['seconds'] = time.perf_counter() - started
    return report


@dataclass
class _Run:
    """What every phase of a timed run needs."""

    config: BenchConfig
    model_cfg: Any
    family: str
    num_layers: int
    folder: str
    quantization: str
    dtype: torch.dtype
    image_size: tuple[int, int]
    clock: Clock

    @property
    def load_config(self) -> LoadConfig:
        """Return how every model of this run is loaded (exit layer aside)."""
        return LoadConfig(self.folder, quantization=self.quantization,
                          device=self.config.device, dtype=self.config.dtype,
                          quantize_modules=self.config.quantize_modules)

    def bound(self, loaded: Any) -> Any:
        """Apply the run's vision side to a loaded model's processor and return the model."""
        if self.config.vision_side is not None:
            set_vision_side(loaded.processor, self.family, self.config.vision_side)
        return loaded

    def load(self, exit_layer: int | None) -> Any:
        """Load the model (full: None) with the run's settings."""
        return self.bound(load_model(with_exit_layer(self.load_config, exit_layer)))


def _time_everything(run: _Run, report: dict[str, Any], work: Path) -> None:
    """Calibrate the benchmark profiles, then time the paths and every sweep into `report`."""
    config = run.config
    k_max = max((config.tasks,) + tuple(config.task_counts))
    sweep_layers = resolve_layers(config, run.num_layers) if config.layers != () else []
    images = measure.frames(run.image_size, seed=config.seed + 1)

    # The model truncated at the deepest layer needed: profiles, then the exit-layer sweep.
    loaded = run.load(max([config.exit_layer] + sweep_layers))
    plan = {'main': ([config.exit_layer], k_max)}
    if sweep_layers:
        plan['layers'] = (sweep_layers, 1)
    folders = quick_profiles(Engine(loaded), Path(run.folder), run.quantization, plan,
                             run.image_size, config.neurons, config.calibration_images, work,
                             config.seed)
    report['profiles'] = {'folder': str(work) if config.work_dir else None,
                          'neurons': config.neurons,
                          'calibration_images': config.calibration_images,
                          'how': 'quick calibration on generated scenes (see docs/benchmarks.md)'}
    if sweep_layers:
        selftest = run_selftest(run.quantization, loaded.device, loaded.dtype)
        report['layers'] = measure.sweep_exit_layers(
            loaded, folders['layers'], selftest, images[0], run.clock, config.sweep_repeats, 0)
    loaded = None
    _free_memory()

    # The node's runtime, and the full model beside it when both fit.
    runtime = Runtime.load(run.load_config, [folders['main'][config.exit_layer]])
    run.bound(runtime.loaded)
    names = [task.spec.name for task in bench_tasks(k_max)]
    need = estimated_bytes(model_sizes(run.model_cfg, config.exit_layer)[0], run.quantization,
                           run.dtype)
    together = fits_beside(need)
    main_tasks = [runtime.profiles[name].task for name in names[:config.tasks]]
    main_prompts = [runtime.profiles[name].prompt for name in names[:config.tasks]]
    full_paths = None
    if together:
        full_paths = FullModelPaths(Engine(run.load(None)), main_tasks, config.max_new_tokens,
                                    main_prompts)
    else:
        LOG.warning('the full model (~%.1f GiB) does not fit beside the truncated one: timing '
                    '(a), (b) after (c), (d) instead of interleaved', need / 2**30)
    tokens, length = image_tokens(runtime.engine, images[0], main_prompts[0])
    report['model'].update(image_tokens=tokens, prompt_tokens=length)
    main = measure.measure_main(runtime, full_paths, names[:config.tasks], images, run.clock,
                                config.repeats, config.warmup)
    main['interleaved_with_full'] = together
    report['main'] = main
    if config.task_counts:
        report['tasks'] = measure.sweep_task_counts(
            runtime, names, config.task_counts, images[0], run.clock, config.sweep_repeats, 0)
    sides = config.sizes if config.sizes is not None else _auto_sizes(config, run.image_size)
    if sides:
        report['sizes'] = measure.sweep_sizes(runtime, names[0], sides, run.clock,
                                              config.sweep_repeats, 0, seed=config.seed + 1)
    if config.torch_profile:
        report['torch_profile'] = _profile_one_answer(runtime, images[0], names[:config.tasks],
                                                      config.torch_profile)
    resident = {'truncated': {'parameters': runtime.loaded.resident_parameters(),
                              'bytes': runtime.loaded.resident_bytes()}}
    if full_paths is None:
        runtime = None
        _free_memory()
        full_paths = FullModelPaths(Engine(run.load(None)), main_tasks, config.max_new_tokens,
                                    main_prompts)
        _fill_full_only(main, measure.measure_full_only(full_paths, images, run.clock,
                                                        config.repeats, config.warmup))
    full_model = full_paths.engine.loaded
    resident['full'] = {'parameters': full_model.resident_parameters(),
                        'bytes': full_model.resident_bytes()}
    resident['process_rss_bytes'] = rss_bytes()
    resident['process_peak_rss_bytes'] = peak_rss_bytes()
    report['memory']['resident'] = resident
    full_paths = runtime = full_model = None
    _free_memory()


def _probes(config: BenchConfig, folder: str, image_size: tuple[int, int]) -> list[dict]:
    """Measure full and truncated, unquantized and nf4, each in its own process."""
    return [probe_memory(folder, q, layer, config.device, config.dtype, image_size,
                         vision_side=config.vision_side)
            for q in ('none', 'nf4') for layer in (None, config.exit_layer)]


def _fill_full_only(main: dict[str, Any], full: dict[str, Any]) -> None:
    """Add (a) and (b), timed apart from (c), to the main results (ratios of medians only)."""
    main['stats'].update(full['stats'])
    main['a_new_tokens'] = full['a_new_tokens']
    c = main['stats']['c_superneuron']['median']
    for name, key in (('a/c', 'a_generate'), ('b/c', 'b_prefill')):
        main['ratios'][name] = {'of_medians': full['stats'][key]['median'] / c}


def _nominal_size(config: BenchConfig, folder: str) -> tuple[int, int]:
    """Return the default square frame: the vision side, the preset's side, zoo.json's, or 448."""
    import json
    from superneuron_ros.lab.zoo import get_preset
    if config.vision_side is not None:
        side = config.vision_side
    elif config.preset is not None:
        side = get_preset(config.preset).image_size
    else:
        manifest = Path(folder) / 'zoo.json'
        side = 448
        if manifest.is_file():
            side = int(json.loads(manifest.read_text()).get('image_size') or side)
    return side, side


def _auto_sizes(config: BenchConfig, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Return three vision sides around the main one: half, same, one and a half."""
    side = config.vision_side or max(image_size)
    return tuple(sorted({max(28, side // 2), side, side * 3 // 2}))
