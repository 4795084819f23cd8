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
Peak host memory of a calibration's activation store and ranking at a real model's width.

No model runs: a stand-in engine returns random activations of the given width, and the store
is built by calibration's own :func:`~superneuron_ros.method.calibrate.collect_activations`
(float32 [N, D] per layer and site, filled batch by batch). Then one training fold is ranked
with the search's own :func:`~superneuron_ros.method.crossval.rank_blocks` (every scalar's
inner k-fold score; each block copied to the fold's rows in turn), and the ceiling of the
deepest layer (every scalar of that layer as float64 columns, one logistic regression) is
fitted: the largest transients of the search. The ``float16`` storage keeps centred float16
values instead (what a lower-precision store would need) and converts one block at a time for
the ranking. Each storage runs in its own process, so each peak (Linux VmHWM) is its own:

    python -m superneuron_ros.lab.bench.calibration_memory --examples 600 --layers 9
"""

import argparse
from collections.abc import Mapping
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import numpy as np
from PIL import Image
from superneuron_ros.lab.bench.memory import PACKAGE_ROOT, peak_rss_bytes, reset_peak_rss
from superneuron_ros.lab.bench.memory import rss_bytes
from superneuron_ros.method.calibrate import CalibrationOptions, collect_activations
from superneuron_ros.method.crossval import columns, rank_blocks
from superneuron_ros.method.linear import fit_linear, one_blas_thread, stratified_fold_ids
from superneuron_ros.method.tasks import Example
from superneuron_ros.vlm.capture import SITES
import torch

LLAVA_7B = {'hidden': 4096, 'intermediate': 11008}  # LLaVA-1.5-7B (Vicuna-7B) widths
MIB = 2 ** 20
MODULE = 'superneuron_ros.lab.bench.calibration_memory'


class SyntheticEngine:
    """Stands in for an Engine: random activations of a model's width, with a large offset."""

    def __init__(self, hidden: int, intermediate: int, seed: int = 0) -> None:
        """Return activations of `hidden` (residual) and `intermediate` (mlp) values."""
        self.sizes = {'residual': hidden, 'mlp': intermediate}
        self.generator = torch.Generator().manual_seed(seed)

    def capture(self, images: list, prompts: list, wanted: Mapping) -> dict:
        """Return [B, D] float32 per wanted (layer, site), like Engine.capture."""
        shapes = {key: (len(images), self.sizes[key[1]]) for key in wanted}
        return {key: 30.0 + 0.1 * torch.randn(shape, generator=self.generator)
                for key, shape in shapes.items()}


class _Float32Blocks(Mapping):
    """A float16 store seen as float32, one block converted at a time."""

    def __init__(self, store: dict, centres: dict) -> None:
        self.store, self.centres = store, centres

    def __getitem__(self, key: tuple[int, str]) -> torch.Tensor:
        return self.store[key].float() + self.centres[key]

    def __iter__(self) -> Iterator:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)


def _examples(folder: Path, n: int) -> list[Example]:
    """Return n examples of one tiny image, labels alternating (two classes)."""
    path = folder / 'image.png'
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
    return [Example(path, 'synthetic', 'synthetic?', ('yes', 'no')[i % 2], i % 2)
            for i in range(n)]


def measure(storage: str, examples: int, layers: int, hidden: int, intermediate: int,
            batch_size: int = 8) -> dict[str, Any]:
    """Build the store, rank one fold and fit the deepest ceiling; return the peaks (bytes)."""
    settings = CalibrationOptions().settings()
    y = np.arange(examples) % 2
    out: dict[str, Any] = {'storage': storage, 'examples': examples, 'layers': layers,
                           'hidden': hidden, 'intermediate': intermediate,
                           'rss_start': rss_bytes()}
    reset_peak_rss()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        items = _examples(Path(tmp), examples)
        engine = SyntheticEngine(hidden, intermediate)
        if storage == 'float32':
            store = collect_activations(engine, items, '', range(layers), SITES, batch_size,
                                        progress=False)
            view = store
        else:
            store, centres = _float16_store(engine, items, layers, batch_size)
            view = _Float32Blocks(store, centres)
    out['store_bytes'] = sum(t.numel() * t.element_size() for t in store.values())
    out['collect_s'] = time.perf_counter() - started
    out['peak_collect'] = peak_rss_bytes()
    fold = stratified_fold_ids(y, settings.folds, settings.seed)
    train = np.flatnonzero(fold != 0)
    started = time.perf_counter()
    with one_blas_thread():
        rank_blocks(view, train, y, 2, settings, max(settings.k, max(settings.sizes)))
        out['rank_s'] = time.perf_counter() - started
        out['peak_rank'] = peak_rss_bytes()
        last = {(layers - 1, site): view[(layers - 1, site)] for site in SITES}  # float32
        deepest = [(0.0, layers - 1, SITES.index(site), 0, i) for site in SITES
                   for i in range(last[(layers - 1, site)].shape[1])]
        started = time.perf_counter()
        fit_linear(columns(last, deepest, train), y[train], 2, 0.1, max_iter=20)
        out['ceiling_s'] = time.perf_counter() - started
    out['peak_total'] = peak_rss_bytes()
    return out


def _float16_store(engine: SyntheticEngine, items: list[Example], layers: int,
                   batch_size: int) -> tuple[dict, dict]:
    """Return float16 values centred on the first batch's means, and the centres (float32)."""
    wanted = {(layer, site): None for layer in range(layers) for site in SITES}
    store: dict = {}
    centres: dict = {}
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        for key, value in engine.capture(batch, [''] * len(batch), wanted).items():
            if key not in store:
                centres[key] = value.mean(dim=0)
                store[key] = torch.empty((len(items), value.shape[1]), dtype=torch.float16)
            store[key][start:start + len(batch)] = (value - centres[key]).half()
    return store, centres


def run_storages(examples: int, layers: int, hidden: int, intermediate: int,
                 storages: tuple[str, ...] = ('float32', 'float16')) -> list[dict[str, Any]]:
    """Measure each storage in a fresh process; return their results."""
    results = []
    for storage in storages:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / 'result.json'
            subprocess.run([sys.executable, '-m', MODULE, '--child', storage, '--examples',
                            str(examples), '--layers', str(layers), '--hidden', str(hidden),
                            '--intermediate', str(intermediate), '--json', str(path)],
                           check=True, cwd=PACKAGE_ROOT)
            results.append(json.loads(path.read_text()))
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    """Return the results as a table in MiB and seconds."""
    first = results[0]
    lines = [f"calibration memory at width hidden {first['hidden']} + intermediate "
             f"{first['intermediate']}, layers 0..{first['layers'] - 1}, {first['examples']} "
             'examples (synthetic activations; peak RSS of the process, MiB)',
             'storage   store  start  after collect  after ranking  after ceiling  '
             'collect s  rank s  ceiling s']
    for r in results:
        lines.append(f"{r['storage']:>7}  {r['store_bytes'] / MIB:6.0f}  "
                     f"{r['rss_start'] / MIB:5.0f}  {r['peak_collect'] / MIB:13.0f}  "
                     f"{r['peak_rank'] / MIB:13.0f}  {r['peak_total'] / MIB:13.0f}  "
                     f"{r['collect_s']:9.1f}  {r['rank_s']:6.1f}  {r['ceiling_s']:9.1f}")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement (each storage in its own process) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--examples', type=int, default=600)
    parser.add_argument('--layers', type=int, default=9, help='layers 0..L-1 (default: 9)')
    parser.add_argument('--hidden', type=int, default=LLAVA_7B['hidden'])
    parser.add_argument('--intermediate', type=int, default=LLAVA_7B['intermediate'])
    parser.add_argument('--child', choices=('float32', 'float16'), help=argparse.SUPPRESS)
    parser.add_argument('--json', type=Path, default=None, metavar='PATH')
    args = parser.parse_args(argv)
    if args.child:
        result = measure(args.child, args.examples, args.layers, args.hidden, args.intermediate)
        args.json.write_text(json.dumps(result))
        return 0
    results = run_storages(args.examples, args.layers, args.hidden, args.intermediate)
    print(format_results(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
