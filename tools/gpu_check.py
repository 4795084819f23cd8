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
The CUDA check: each quantization backend on the GPU with the shipped demo model and profiles.

Per backend: the self-test against the float weights, the compute dtype chosen ('auto': bfloat16
only where the GPU has it natively), answers from a thread other than the loader's (the runtime
selects the model's device), their p50 latency (the engine synchronises before reading clocks),
the CUDA memory allocated while loaded and after ``close`` (it must return to where it started).
Prints a Markdown table; exits 1 when a check fails.

    python tools/gpu_check.py [--device cuda:0] [--answers 20]
"""

import argparse
from pathlib import Path
import statistics
import sys
import threading

import numpy as np
from superneuron_ros.lab import scenes
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.config import LoadConfig
from superneuron_ros.vlm.loading import native_bf16
import torch

DATA = Path(__file__).resolve().parents[1] / 'superneuron_ros/superneuron_ros/data'
CASES = (('nf4', 'language'), ('nf4', 'all'), ('torchao-int4', 'language'), ('none', 'language'))
MIB = 2 ** 20


def check(device: torch.device, quantization: str, modules: str, answers: int) -> dict:
    """Load, answer from another thread, close; return the row and whether it passed."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    config = LoadConfig(str(DATA / 'demo_model'), quantization=quantization, device=str(device),
                        quantize_modules=modules, allow_quantization_mismatch=True)
    row = {'quantization': quantization, 'modules': modules}
    try:
        runtime = Runtime.load(config, [DATA / 'demo_profiles'])
    except Exception as exc:  # noqa: B902 - the failure is the finding
        return {**row, 'ok': False, 'error': f'{type(exc).__name__}: {exc}'[:120]}
    loaded = torch.cuda.memory_allocated(device)
    rng = np.random.default_rng(0)
    images = [scenes.render(scenes.sample_scene_for('blue_present', 'yes', rng), (64, 64))
              for _ in range(answers)]
    latencies, errors = [], []

    def worker() -> None:  # not the loading thread: the runtime must select its device
        try:
            for image in images:
                times = runtime.answer(image, list(runtime.tasks)).times
                latencies.append(times.vision_ms + times.decoder_ms + times.classify_ms)
        except Exception as exc:  # noqa: B902
            errors.append(f'{type(exc).__name__}: {exc}')

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    selftest, dtype = runtime.selftest, str(runtime.loaded.dtype).replace('torch.', '')
    runtime.close()
    torch.cuda.synchronize(device)
    after = torch.cuda.memory_allocated(device)
    ok = selftest.ok and not errors and after <= before + MIB
    return {**row, 'ok': ok, 'dtype': dtype, 'selftest': f'{selftest.max_rel_error:.3f}'
            f'/{selftest.bound:.2f}', 'p50 ms': round(statistics.median(latencies), 2)
            if latencies else None, 'loaded MiB': round((loaded - before) / MIB, 1),
            'after close MiB': round((after - before) / MIB, 2),
            'error': errors[0][:120] if errors else ''}


def main() -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--device', default='cuda:0')
    parser.add_argument('--answers', type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print('no CUDA device: nothing to check')
        return 1
    device = torch.device(args.device)
    print(f'{torch.cuda.get_device_name(device)}, capability '
          f'{torch.cuda.get_device_capability(device)}, native bf16: {native_bf16(device)}, '
          f'torch {torch.__version__}')
    rows = [check(device, q, m, args.answers) for q, m in CASES]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    print('| ' + ' | '.join(keys) + ' |')
    print('|' + ' --- |' * len(keys))
    for row in rows:
        print('| ' + ' | '.join(str(row.get(key, '')) for key in keys) + ' |')
    return 0 if all(row['ok'] for row in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
