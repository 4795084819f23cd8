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
Time a first and a second configure on a synthetic LLaVA-1.5-7B checkpoint cut at layer L.

Writes (once) a checkpoint of the llava-1.5-7b preset's shapes with random float16 weights for
the vision tower, projector, embeddings and decoder layers 0..L only (deeper layers and the LM
head are absent: a truncated load never reads them), a profile whose fingerprint matches, then
times ``Runtime.load`` twice with an empty weights-hash cache: the first configure hashes the
weights, the second finds the hash in the cache. Prints one JSON line per configure.

    python tools/measure_configure.py --out /tmp/llava7b_l15 --layer 15 [--quantization none]
"""

import argparse
import dataclasses
import json
import os
from pathlib import Path
import shutil
import tempfile
import time

from safetensors.torch import save_file
from superneuron_ros.lab.zoo import build_processor, get_preset
from superneuron_ros.method.profiles import Profile
from superneuron_ros.vlm import checkpoint
from superneuron_ros.vlm.fingerprint import model_fingerprint
import torch
from transformers import AutoModelForImageTextToText


def write_checkpoint(out: Path, layer: int, shard_bytes: int = 2 << 30) -> None:
    """Write config, processor and random float16 weights of layers 0..`layer` to `out`."""
    config = get_preset('llava-1.5-7b').config()
    with torch.device('meta'):
        meta = AutoModelForImageTextToText.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    build_processor('llava', config=config, image_size=336).save_pretrained(out)
    generator = torch.Generator().manual_seed(0)
    shard, size, count = {}, 0, 0
    for key, param in meta.state_dict().items():
        depth = checkpoint.tensor_layer(key)
        if checkpoint.LM_HEAD.search(key) or (depth is not None and depth > layer):
            continue
        shard[key] = (torch.randn(param.shape, generator=generator) * 0.02).half()
        size += shard[key].numel() * 2
        if size >= shard_bytes:
            save_file(shard, out / f'model-{count:05d}.safetensors', metadata={'format': 'pt'})
            shard, size, count = {}, 0, count + 1
    if shard:
        save_file(shard, out / f'model-{count:05d}.safetensors', metadata={'format': 'pt'})
    write_index(out)


def write_index(out: Path) -> None:
    """Write model.safetensors.index.json (how transformers finds sharded weights)."""
    weight_map, total = {}, 0
    for path in sorted(out.glob('*.safetensors')):
        header, _ = checkpoint.safetensors_header(path)
        for key, info in header.items():
            if key != '__metadata__':
                weight_map[key] = path.name
                total += info['data_offsets'][1] - info['data_offsets'][0]
    (out / 'model.safetensors.index.json').write_text(json.dumps(
        {'metadata': {'total_size': total}, 'weight_map': weight_map}, indent=1))


def matching_profile(template: Path, folder: Path, layer: int, quantization: str,
                     out: Path) -> Path:
    """Save `template` re-targeted at the synthetic model: exit layer `layer`, its fingerprint."""
    from superneuron_ros.vlm.loading import read_config
    profile = Profile.load(template)
    fingerprint = model_fingerprint(folder, read_config(folder), quantization, layer)
    changed = dataclasses.replace(profile, exit_layer=layer, fingerprint=fingerprint,
                                  layer=profile.layer * 0 + layer)
    return changed.save(out, overwrite=True)


def main() -> None:
    """Write the checkpoint if needed, then time two configures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--layer', type=int, default=15)
    parser.add_argument('--quantization', default='none')
    parser.add_argument('--dtype', default='bfloat16')
    parser.add_argument('--profile', type=Path, default=Path(__file__).resolve().parents[1] /
                        'superneuron_ros/superneuron_ros/data/demo_profiles/red_present')
    args = parser.parse_args()
    folder = args.out / 'model'
    if not list(folder.glob('*.safetensors')):
        start = time.perf_counter()
        write_checkpoint(folder, args.layer)
        print(json.dumps({'wrote_checkpoint_s': round(time.perf_counter() - start, 1)}))
    if not (folder / 'model.safetensors.index.json').is_file():
        write_index(folder)
    weights = sum(p.stat().st_size for p in folder.glob('*.safetensors'))
    cache = Path(tempfile.mkdtemp(prefix='superneuron-configure-'))
    os.environ['SUPERNEURON_CACHE'] = str(cache)
    profile = matching_profile(args.profile, folder, args.layer, args.quantization,
                               args.out / 'profile')
    shutil.rmtree(cache)  # the profile's fingerprint filled it: start from an empty cache
    from superneuron_ros.runtime.facade import Runtime
    from superneuron_ros.vlm.config import LoadConfig
    config = LoadConfig(str(folder), quantization=args.quantization, device='cpu',
                        dtype=args.dtype)
    for run in ('first', 'second'):
        hashed = []
        real = checkpoint.weights_hash

        def timed_hash(*hash_args, **hash_kwargs):
            begin = time.perf_counter()
            digest = real(*hash_args, **hash_kwargs)
            hashed.append(time.perf_counter() - begin)
            return digest

        from superneuron_ros.vlm import hashcache
        hashcache.weights_hash = timed_hash
        start = time.perf_counter()
        runtime = Runtime.load(config, [profile])
        total = time.perf_counter() - start
        runtime.close()
        hashcache.weights_hash = real
        print(json.dumps({'configure': run, 'seconds': round(total, 1),
                          'hash_seconds': round(sum(hashed), 1), 'hashed': bool(hashed),
                          'checkpoint_gib': round(weights / 2**30, 2),
                          'quantization': args.quantization, 'dtype': args.dtype,
                          'exit_layer': args.layer}))


if __name__ == '__main__':
    main()
