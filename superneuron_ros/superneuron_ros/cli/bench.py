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

"""`superneuron bench`: time the super-neuron path against the full model and its cost floor."""

import argparse
import json
from pathlib import Path
import shlex
import sys

from superneuron_ros.cli.arguments import image_size, positive_int
from superneuron_ros.vlm.config import QUANTIZATIONS

PRESET_NAMES = ('llava-1.5-7b', 'qwen2-vl-2b', 'smolvlm-256m', 'demo')  # core.zoo.PRESETS


def _int_list(text: str) -> tuple[int, ...] | None:
    """Parse `auto` (None), `none` (empty) or a comma-separated list of integers."""
    if text.strip().lower() == 'auto':
        return None
    if text.strip().lower() == 'none':
        return ()
    try:
        return tuple(int(part) for part in text.split(',') if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a list; use e.g. 0,1,4 or auto or none') from None


def command_line(args: argparse.Namespace) -> str:
    """Return the `superneuron bench` command that repeats this run (options not at default)."""
    words = ['superneuron', 'bench']
    for dest, option, default in args.bench_options:
        value = getattr(args, dest, None)
        if value is None or value == default or dest == 'json':
            continue
        if isinstance(value, bool):  # a flag away from its default
            words.append(option)
        elif dest == 'image_size':
            words += [option, f'{value[0]}x{value[1]}']
        elif isinstance(value, tuple):
            words += [option, ','.join(map(str, value)) if value else 'none']
        else:
            words += [option, shlex.quote(str(value))]
    return ' '.join(words)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `bench` subcommand."""
    parser = subparsers.add_parser(
        'bench', help='benchmark the super-neuron path against the full model',
        description='Time, in one process and interleaved: (a) the full model generating its '
                    'answer, (b) its single prefill, (c) the super-neuron path from an image to '
                    'a label (the Runtime of the node), (d) the floor: vision tower plus layers '
                    '0..L. Then sweep exit layer, image size and tasks per frame, and size '
                    'memory. A preset is a real model shape with random weights, built once '
                    'into --cache-dir; its profiles come from a quick real calibration on '
                    'generated scenes. Prints tables and writes a JSON report.')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--model', metavar='DIR', help='local Hugging Face model folder')
    source.add_argument('--preset', choices=PRESET_NAMES,
                        help='model shape with random weights')
    parser.add_argument('--cache-dir', metavar='DIR',
                        help='where presets are built (default: ~/.cache/superneuron_ros/presets)')
    parser.add_argument('--exit-layer', type=int, default=1, metavar='L',
                        help='exit layer of the super-neuron path (default: 1)')
    parser.add_argument('--quantization', choices=('auto',) + QUANTIZATIONS,
                        default='auto', help='weights (default auto: nf4 on CUDA, none on CPU)')
    parser.add_argument('--quantize-modules', choices=('language', 'all'), default='language',
                        help='quantize the decoder layers only, or the vision tower and '
                             'projector too (default: language)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--dtype', default='auto',
                        choices=('auto', 'float32', 'float16', 'bfloat16'),
                        help='compute dtype (default auto: float32 on CPU, bf16/fp16 on CUDA)')
    parser.add_argument('--image-size', type=image_size, metavar='S|HxW',
                        help='frame size in pixels (default: --vision-side, else the nominal '
                             'side of the model)')
    parser.add_argument('--vision-side', type=positive_int, metavar='S',
                        help='bound what the processor resizes images to: Qwen at most SxS '
                             'pixels, SmolVLM a longest edge of S (512 px tiles); LLaVA is fixed '
                             '(default: the processor as saved)')
    parser.add_argument('--tasks', type=positive_int, default=1, metavar='K',
                        help='tasks answered per frame in the main measurement (default: 1)')
    parser.add_argument('--repeats', type=positive_int, default=5, metavar='N',
                        help='timed repeats of the main measurement (default: 5)')
    parser.add_argument('--warmup', type=int, default=1, metavar='N',
                        help='untimed warm-up rounds (default: 1)')
    parser.add_argument('--sweep-repeats', type=positive_int, default=3, metavar='N',
                        help='timed repeats of every sweep point (default: 3)')
    parser.add_argument('--max-new-tokens', type=positive_int, default=3, metavar='N',
                        help='tokens (a) may generate (default: 3; random weights use them all)')
    parser.add_argument('--layers', type=_int_list, default=None, metavar='auto|none|L,..',
                        help='exit layers to sweep (default auto: 0, 1, L, N/4, N/2, N-1)')
    parser.add_argument('--sizes', type=_int_list, default=None, metavar='auto|none|S,..',
                        help='vision sides to sweep, with square frames of that side '
                             '(default auto: 0.5, 1, 1.5 x the main one)')
    parser.add_argument('--task-counts', type=_int_list, default=(1, 2, 4, 8),
                        metavar='none|K,..', help='tasks per frame to sweep (default: 1,2,4,8)')
    parser.add_argument('--neurons', type=positive_int, default=5, metavar='K',
                        help='neurons per benchmark profile (default: 5)')
    parser.add_argument('--calibration-images', type=positive_int, default=8, metavar='N',
                        help='generated images of the quick calibration (default: 8)')
    parser.add_argument('--memory', action='store_true',
                        help='also measure peak memory of full / truncated x nf4 / none, '
                             'each in its own process')
    parser.add_argument('--memory-only', action='store_true',
                        help='no timing: size the parameters on the meta device (no weights '
                             'needed) and, with --memory, run the peak-memory probes')
    parser.add_argument('--threads', type=positive_int, metavar='N',
                        help='torch CPU threads (default: as torch chooses)')
    parser.add_argument('--torch-profile', type=int, default=0, metavar='N',
                        help='list the top N operators of one super-neuron answer')
    parser.add_argument('--work-dir', metavar='DIR',
                        help='where benchmark profiles are written (default: a temp folder)')
    parser.add_argument('--no-loaded', dest='loaded', action='store_false',
                        help='skip the loaded-set timing (a shallow task alone-loaded vs with '
                             'deep profiles loaded; all loaded tasks in one call)')
    parser.add_argument('--profiles', metavar='DIR',
                        help='real profiles (a folder of profile folders) for the loaded-set '
                             'timing instead of quick ones, e.g. the demo profiles')
    parser.add_argument('--accuracy-scenes', type=int, default=0, metavar='N',
                        help='score --profiles on N fresh generated scenes: accuracy and mean '
                             'decoder layers run (anytime exits; default: 0, skip)')
    parser.add_argument('--seed', type=int, default=0, help='seed of scenes and presets')
    parser.add_argument('--json', metavar='FILE', default='superneuron_bench.json',
                        help='JSON report path (default: superneuron_bench.json; - for stdout)')
    options = [(action.dest, action.option_strings[-1], action.default)
               for action in parser._actions if action.option_strings and action.dest != 'help']
    parser.set_defaults(func=run, bench_options=options)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by the parsed arguments, print it and write the JSON."""
    from superneuron_ros.lab.bench import BenchConfig, format_report, run_benchmark, write_json
    try:
        config = BenchConfig(
            model_path=args.model, preset=args.preset, cache_dir=args.cache_dir,
            exit_layer=args.exit_layer, quantization=args.quantization, device=args.device,
            quantize_modules=args.quantize_modules,
            dtype=args.dtype, image_size=args.image_size, vision_side=args.vision_side,
            tasks=args.tasks,
            repeats=args.repeats, warmup=args.warmup, max_new_tokens=args.max_new_tokens,
            neurons=args.neurons, calibration_images=args.calibration_images,
            layers=args.layers, sizes=args.sizes, task_counts=args.task_counts or (),
            sweep_repeats=args.sweep_repeats, memory=args.memory, memory_only=args.memory_only,
            threads=args.threads, torch_profile=args.torch_profile, work_dir=args.work_dir,
            seed=args.seed, loaded=args.loaded, profiles=args.profiles,
            accuracy_scenes=args.accuracy_scenes)
    except ValueError as exc:
        print(f'superneuron bench: {exc}', file=sys.stderr)
        return 2
    report = run_benchmark(config)
    report['command'] = command_line(args)
    if args.json == '-':
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(format_report(report))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    path = write_json(report, args.json)
    print(f'\nJSON report: {path}')
    return 0
