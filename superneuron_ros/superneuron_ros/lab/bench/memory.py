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
Memory: parameter sizes on the meta device, and peak process memory measured in a subprocess.

:func:`meta_sizes` needs only a config, so a 7B shape is sized on any machine. Peak memory is a
property of a whole process, so :func:`probe_memory` measures each model build in a fresh
subprocess: ``python -m superneuron_ros.lab.bench.memory`` loads the model, runs one pass (the
floor of the super-neuron path for a truncated model, one prefill for the full one) and writes
what it saw to a JSON file: the peak while loading and, after resetting the peak (Linux), the
peak while answering.
"""

import argparse
import json
import logging
import os
from pathlib import Path
import platform
import resource
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
from superneuron_ros.vlm.sizing import model_sizes
import torch

LOG = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding superneuron_ros/


def meta_sizes(config: Any, exit_layer: int) -> dict[str, Any]:
    """Return parameter counts and byte estimates of the full and the truncated model."""
    full, truncated = model_sizes(config, exit_layer)

    def entry(size: Any) -> dict[str, Any]:
        return {'parameters': size.total, 'linear_parameters': size.linear,
                'decoder_layers': size.decoder_layers,
                'bytes_nf4': size.estimate_bytes('nf4', dtype_bytes=2),  # language layers
                'bytes_nf4_all': size.estimate_bytes('nf4', dtype_bytes=2, quantize_modules='all'),
                'bytes_int8': size.estimate_bytes('int8', dtype_bytes=2),
                'bytes_float16': size.estimate_bytes('none', dtype_bytes=2),
                'bytes_float32': size.estimate_bytes('none', dtype_bytes=4)}

    return {'exit_layer': exit_layer, 'full': entry(full), 'truncated': entry(truncated),
            'parameter_ratio': truncated.total / full.total,
            'nf4_bytes_ratio': truncated.estimate_bytes('nf4') / full.estimate_bytes('nf4')}


def rss_bytes() -> int:
    """Return the resident set size of this process now."""
    import psutil
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """
    Return the peak resident set size of this process so far.

    On Linux this is VmHWM, the high-water mark of this process's own memory map: unlike
    ``ru_maxrss``, it does not inherit the size of the parent that forked this process.
    """
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == 'darwin' else peak * 1024)  # macOS: bytes, Linux: KiB


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: /proc/self/clear_refs); return whether it worked."""
    try:
        Path('/proc/self/clear_refs').write_text('5')
    except OSError:
        return False
    return True


def available_bytes() -> int:
    """Return the memory the system can still give to a process."""
    import psutil
    return int(psutil.virtual_memory().available)


def cuda_peaks(device: torch.device) -> dict[str, int] | None:
    """Return the CUDA allocator's peak allocated and reserved bytes, or None off CUDA."""
    if device.type != 'cuda':
        return None
    return {'allocated': int(torch.cuda.max_memory_allocated(device)),
            'reserved': int(torch.cuda.max_memory_reserved(device))}


def probe_memory(model_path: str, quantization: str, exit_layer: int | None, device: str,
                 dtype: str, image_size: tuple[int, int], timeout_s: float = 1800.0,
                 vision_side: int | None = None) -> dict:
    """Measure one model build in a fresh process; returns its report, or one with an 'error'."""
    with tempfile.TemporaryDirectory(prefix='superneuron-memprobe-') as tmp:
        out = Path(tmp) / 'probe.json'
        command = [sys.executable, '-m', 'superneuron_ros.lab.bench.memory', '--model',
                   str(model_path), '--quantization', quantization, '--exit-layer',
                   'full' if exit_layer is None else str(exit_layer), '--device', device,
                   '--dtype', dtype, '--image-size', str(image_size[0]), str(image_size[1]),
                   '--threads', str(torch.get_num_threads()), '--out', str(out)]
        if vision_side is not None:
            command += ['--vision-side', str(vision_side)]
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [str(PACKAGE_ROOT)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
        where = {'quantization': quantization, 'exit_layer': exit_layer}
        LOG.info('memory probe: %s, %s', quantization,
                 'full model' if exit_layer is None else f'layers 0..{exit_layer}')
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {**where, 'error': f'timed out after {timeout_s:.0f} s'}
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or '').strip().splitlines()[-3:]
            return {**where, 'error': f'exit code {done.returncode}: ' + ' | '.join(tail)}
        return json.loads(out.read_text())


def _probe(args: argparse.Namespace) -> dict[str, Any]:
    """Load one model, run one pass and return what memory it took."""
    from superneuron_ros.lab import scenes
    from superneuron_ros.lab.bench.paths import floor_pass
    from superneuron_ros.vlm.engine import Engine
    from superneuron_ros.vlm.loading import load_model, LoadConfig
    torch.set_num_threads(args.threads)
    exit_layer = None if args.exit_layer == 'full' else int(args.exit_layer)
    baseline = rss_bytes()
    loaded = load_model(LoadConfig(args.model, quantization=args.quantization,
                                   device=args.device, dtype=args.dtype, exit_layer=exit_layer))
    after_load = rss_bytes()
    peak_load = peak_rss_bytes()
    peak_reset = reset_peak_rss()
    if args.vision_side is not None:
        loaded.family.set_vision_side(loaded.processor.image_processor, args.vision_side)
    engine = Engine(loaded)
    image = scenes.render(scenes.random_scene(np.random.default_rng(0)),
                          tuple(args.image_size))
    prompt = engine.render_prompt('Is there a red shape in the image?')
    if exit_layer is None:
        engine.first_token_logits([image], [prompt])
    else:
        floor_pass(engine, image, [prompt])
    return {'quantization': args.quantization, 'exit_layer': exit_layer,
            'device': str(loaded.device), 'dtype': str(loaded.dtype).replace('torch.', ''),
            'resident_parameters': loaded.resident_parameters(),
            'resident_bytes': loaded.resident_bytes(), 'rss_baseline_bytes': baseline,
            'rss_after_load_bytes': after_load, 'peak_load_rss_bytes': peak_load,
            'peak_pass_rss_bytes': peak_rss_bytes() if peak_reset else None,
            'peak_rss_bytes': max(peak_load, peak_rss_bytes()),
            'cuda_peak_bytes': cuda_peaks(loaded.device)}


def main(argv: list[str] | None = None) -> int:
    """Run one memory probe (the subprocess side of :func:`probe_memory`)."""
    parser = argparse.ArgumentParser(description='superneuron_ros memory probe (internal)')
    parser.add_argument('--model', required=True)
    parser.add_argument('--quantization', required=True)
    parser.add_argument('--exit-layer', required=True)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--dtype', default='auto')
    parser.add_argument('--image-size', type=int, nargs=2, default=(224, 224))
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--vision-side', type=int, default=None)
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    logging.basicConfig(level=logging.WARNING)
    Path(args.out).write_text(json.dumps(_probe(args), indent=2) + '\n')
    return 0


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


if __name__ == '__main__':
    sys.exit(main())
