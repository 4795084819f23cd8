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

"""`superneuron calibrate`: find a task's Super Neurons on a model and write a profile folder."""

import argparse
from pathlib import Path


def int_list(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of positive integers, e.g. `8,16,32`."""
    try:
        values = tuple(int(part) for part in text.split(',') if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a list of positive integers, '
                                         'e.g. 8,16,32')
    return values


def site_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of activation sites."""
    from superneuron_ros.method.probing import SITES
    sites = tuple(part.strip() for part in text.split(',') if part.strip())
    if not sites or any(site not in SITES for site in sites):
        raise argparse.ArgumentTypeError(f'{text!r}: choose from {",".join(SITES)}')
    return sites


def exit_layer(text: str) -> int | str:
    """Parse `auto` or a non-negative layer index."""
    if text == 'auto':
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'{text!r}: use auto or a layer index (0, 1, ...)')
    return value


def add_model_arguments(parser: argparse.ArgumentParser, quantization_default: str | None) -> None:
    """Add --quantization, --device and --dtype (shared with `superneuron eval`)."""
    from superneuron_ros.vlm.config import DEVICES, DTYPE_NAMES, QUANTIZATIONS
    from superneuron_ros.vlm.config import QUANTIZED_MODULES
    default = quantization_default or "the profile's"
    parser.add_argument('--quantization', choices=QUANTIZATIONS, default=quantization_default,
                        help='bitsandbytes nf4/fp4/int8, torchao-int4 (where bitsandbytes '
                             f'fails), or none (default: {default})')
    parser.add_argument('--quantize-modules', choices=QUANTIZED_MODULES,
                        default=None if quantization_default is None else 'language',
                        help='quantize the decoder layers only (language) or the vision tower '
                             'and projector too (all) (default: ' + (
                                 "the profile's" if quantization_default is None
                                 else 'language') + ')')
    parser.add_argument('--device', default='auto', metavar='|'.join(DEVICES + ('cuda:N',)),
                        help='where the model runs (default: auto: CUDA when available)')
    parser.add_argument('--dtype', choices=DTYPE_NAMES, default='auto',
                        help='compute dtype (default: auto: float32 on CPU, bfloat16 on CUDA)')


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `calibrate` subcommand."""
    from superneuron_ros.method.calibrate import CalibrationOptions
    defaults = CalibrationOptions()
    parser = subparsers.add_parser(
        'calibrate', help="find a task's Super Neurons and write a profile",
        description='Read every scalar of the chosen sites at the first generated position for '
                    'each example (float32), score by repeated stratified cross-validation the '
                    'vote of the top-k 1-D classifiers and the linear readout over the top m '
                    'scalars of layers 0..L for every L, pick the readout and the exit layer, '
                    'calibrate the probabilities and the anytime thresholds, and write the '
                    'profile with report.json and report.png in it.')
    parser.add_argument('--model', type=Path, required=True, metavar='DIR',
                        help='local Hugging Face model folder')
    parser.add_argument('--task', type=Path, required=True, metavar='TASK.yaml',
                        help='task file (name, question, labels)')
    parser.add_argument('--data', type=Path, required=True, metavar='SET.jsonl',
                        help="labelled set; the task's records are used")
    parser.add_argument('--out', type=Path, required=True, metavar='PROFILE',
                        help='profile folder to write')
    parser.add_argument('--test', type=Path, default=None, metavar='SET.jsonl',
                        help='a labelled set scored once by the final profile, reported apart')
    parser.add_argument('--force', action='store_true', help='replace an existing profile')
    search = parser.add_argument_group('search')
    search.add_argument('--sites', type=site_list, default=defaults.sites, metavar='A,B',
                        help='activation sites searched (default: residual,mlp)')
    search.add_argument('--max-layer', type=int, default=None, metavar='L',
                        help='deepest decoder layer searched (default: every layer, or the '
                             'exit layer when one is given)')
    search.add_argument('--exit-layer', type=exit_layer, default='auto', metavar='auto|L',
                        help='exit layer: auto (shallowest within --tolerance of the best) or '
                             'a layer index (default: auto)')
    search.add_argument('--tolerance', type=float, default=defaults.tolerance, metavar='T',
                        help='accuracy an auto exit may give up for a shallower layer '
                             f'(default: {defaults.tolerance})')
    search.add_argument('--k', type=int, default=defaults.k, metavar='K',
                        help=f'1-D classifiers in the vote readout (default: {defaults.k})')
    search.add_argument('--sizes', type=int_list, default=defaults.sizes, metavar='M,M',
                        help='scalars m compared for the linear readout, chosen by inner '
                             'cross-validation; give one to fix m (default: 8,16,32)')
    search.add_argument('--readout', choices=('auto', 'vote', 'linear'), default='auto',
                        help='auto: the better cross-validated mean at each layer '
                             '(default: auto)')
    search.add_argument('--folds', type=int, default=defaults.folds, metavar='F',
                        help=f'cross-validation folds (default: {defaults.folds})')
    search.add_argument('--repeats', type=int, default=defaults.repeats, metavar='R',
                        help='repeats of the folds, each reshuffled '
                             f'(default: {defaults.repeats})')
    search.add_argument('--no-ceiling', action='store_true',
                        help='skip the linear readout over every scalar of each layer')
    search.add_argument('--metric', choices=('accuracy', 'balanced'), default=defaults.metric,
                        help='ranking and selection metric; balanced for imbalanced sets '
                             f'(default: {defaults.metric})')
    search.add_argument('--prompt-template', default=defaults.prompt_template, metavar='TEXT',
                        help='question text put to the model, with {question} and {options} '
                             f'(default: {defaults.prompt_template!r})')
    run_group = parser.add_argument_group('model and run')
    add_model_arguments(run_group, defaults.quantization)
    run_group.add_argument('--vision-side', type=int_list, default=None, metavar='S[,S]',
                           help='bound the resize of a variable-resolution processor (Qwen2/2.5/'
                                '3-VL: a budget of S x S pixels; SmolVLM: the longest edge, in '
                                'whole tiles); the profile records the size and the runtime sets '
                                'it again at load. Several sides (e.g. 224,336) calibrate at each '
                                'and compare them in the report; the cheapest within --tolerance '
                                'of the best is kept. Fixed-input families (LLaVA) refuse it '
                                "(default: the processor's own size)")
    run_group.add_argument('--batch-size', type=int, default=defaults.batch_size, metavar='B',
                           help=f'images per forward pass (default: {defaults.batch_size})')
    run_group.add_argument('--seed', type=int, default=defaults.seed,
                           help=f'seed of the split and folds (default: {defaults.seed})')
    run_group.add_argument('--no-baseline', action='store_true',
                           help="skip the full model's own answer (it loads the whole model)")
    run_group.add_argument('--no-vision-only', action='store_true',
                           help='skip the vision-only row (the readouts on the image features)')
    run_group.add_argument('--no-progress', action='store_true', help='hide progress bars')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, write the profile folder, and print the report table."""
    from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
    from superneuron_ros.lab.report import format_calibration_table, plot_calibration, REPORT_PNG
    from superneuron_ros.method.calibrate import REPORT_JSON
    from superneuron_ros.method.tasks import load_labelled_set, TaskSpec
    options = CalibrationOptions(
        sites=args.sites, max_layer=args.max_layer, k=args.k, sizes=args.sizes,
        readout=args.readout, folds=args.folds, repeats=args.repeats,
        ceiling=not args.no_ceiling, exit_layer=args.exit_layer,
        tolerance=args.tolerance, metric=args.metric, prompt_template=args.prompt_template,
        quantization=args.quantization, device=args.device, dtype=args.dtype, seed=args.seed,
        quantize_modules=args.quantize_modules,
        vision_side=None if args.vision_side is None else args.vision_side[0],
        vision_only=not args.no_vision_only,
        batch_size=args.batch_size, baseline=not args.no_baseline,
        progress=not args.no_progress)
    task = TaskSpec.from_yaml(args.task)
    examples = load_labelled_set(args.data, task)
    test = load_labelled_set(args.test, task) if args.test is not None else []
    if args.out.exists() and not args.force:
        from superneuron_ros.errors import ProfileError
        raise ProfileError(f'{args.out} already exists; choose another folder or pass --force')
    if args.vision_side is not None:  # refused before any weight is loaded
        from superneuron_ros.vlm.families import family_for
        from superneuron_ros.vlm.loading import check_model_folder, read_config
        from superneuron_ros.vlm.vision_side import refuse_fixed_input
        config = read_config(check_model_folder(args.model))
        refuse_fixed_input(family_for(config.model_type), args.vision_side[0])
    if args.vision_side is not None and len(args.vision_side) > 1:
        from superneuron_ros.method.resolution_sweep import calibrate_resolutions
        result = calibrate_resolutions(args.model, task, examples, args.vision_side, options,
                                       test)
    else:
        result = calibrate(args.model, task, examples, options, test)
    path = result.save(args.out, overwrite=args.force)
    plot_calibration(result.report, path / REPORT_PNG)
    print(format_calibration_table(result.report))
    print(f'profile written to {path} (with {REPORT_JSON} and {REPORT_PNG})')
    return 0
