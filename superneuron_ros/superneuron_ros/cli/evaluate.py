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

"""`superneuron eval`: a profile's answers against the full model's own, accuracy and latency."""

import argparse
from pathlib import Path

from superneuron_ros.cli.arguments import positive_int
from superneuron_ros.cli.calibrate import add_model_arguments


def method_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of evaluation methods."""
    from superneuron_ros.lab.evaluate import METHODS
    methods = tuple(part.strip() for part in text.split(',') if part.strip())
    if not methods or any(method not in METHODS for method in methods):
        raise argparse.ArgumentTypeError(f'{text!r}: choose from {",".join(METHODS)}')
    return methods


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `eval` subcommand."""
    from superneuron_ros.lab.evaluate import METHODS
    parser = subparsers.add_parser(
        'eval', help="compare a profile's answers with the full model's own",
        description='Answer every example of the labelled set one image at a time with (a) the '
                    "profile through the runtime (truncated model), (b) the full model's first "
                    "token restricted to the labels and (c) the full model's greedy generation "
                    'mapped to a label; print accuracy, latency and confusion, and write them '
                    'as JSON.')
    parser.add_argument('--model', type=Path, required=True, metavar='DIR',
                        help='local Hugging Face model folder the profile was calibrated on')
    parser.add_argument('--profile', type=Path, required=True, metavar='PROFILE',
                        help='profile folder written by `superneuron calibrate`, or a folder '
                             'of profile folders: each task is evaluated and one summary JSON '
                             'and markdown table are written')
    parser.add_argument('--data', type=Path, required=True, metavar='SET.jsonl|DIR',
                        help='labelled set (use examples the profile was not calibrated on); '
                             'with a folder of profiles, a folder holding <task>.jsonl per task '
                             '(as `superneuron scenes` writes) or one JSONL with every task')
    parser.add_argument('--methods', type=method_list, default=METHODS, metavar='A,B',
                        help=f'what to run (default: {",".join(METHODS)})')
    parser.add_argument('--limit', type=positive_int, default=None, metavar='N',
                        help='evaluate the first N examples only')
    parser.add_argument('--max-new-tokens', type=positive_int, default=8, metavar='N',
                        help='generation budget of the generate method (default: 8)')
    parser.add_argument('--warmup', type=int, default=1, metavar='N',
                        help='untimed calls per method before timing (default: 1)')
    parser.add_argument('--json', type=Path, default=None, metavar='PATH',
                        help='where to write the results (default: PROFILE/eval.json; for a '
                             'folder of profiles PROFILES/eval_summary.json, with the table '
                             'beside it as .md)')
    add_model_arguments(parser, None)
    parser.add_argument('--no-progress', action='store_true', help='hide progress bars')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and write the JSON results."""
    from superneuron_ros.lab.evaluate import evaluate, EvaluationOptions
    from superneuron_ros.method.profiles import Profile
    from superneuron_ros.jsonio import write_json
    from superneuron_ros.lab.report import format_evaluation_table
    from superneuron_ros.method.tasks import load_labelled_set
    from superneuron_ros.method.profiles import is_profile_dir
    if not is_profile_dir(args.profile) and args.profile.is_dir():
        return run_all(args)
    profile = Profile.load(args.profile)
    options = EvaluationOptions(
        quantization=args.quantization or profile.fingerprint.quantization, device=args.device,
        quantize_modules=args.quantize_modules or (
            profile.fingerprint.quantized_modules
            if profile.fingerprint.quantized_modules != 'none' else 'language'),
        dtype=args.dtype, methods=args.methods, max_new_tokens=args.max_new_tokens,
        warmup=args.warmup, progress=not args.no_progress)
    examples = load_labelled_set(args.data, profile.task)
    if args.limit is not None:
        examples = examples[:args.limit]
    result = evaluate(args.model, args.profile, examples, options)
    out = write_json(result, args.json or args.profile / 'eval.json')
    print(format_evaluation_table(result))
    print(f'results written to {out}')
    return 0


def run_all(args: argparse.Namespace) -> int:
    """Evaluate every profile of a folder; write the summary JSON and its markdown table."""
    import sys
    from superneuron_ros.jsonio import write_json
    from superneuron_ros.lab.eval_summary import evaluate_all, summary_markdown
    from superneuron_ros.lab.evaluate import EvaluationOptions
    from superneuron_ros.method.profiles import find_profiles, Profile
    first = Profile.load(find_profiles([args.profile])[0]).fingerprint
    options = EvaluationOptions(
        quantization=args.quantization or first.quantization, device=args.device,
        quantize_modules=args.quantize_modules or (
            first.quantized_modules if first.quantized_modules != 'none' else 'language'),
        dtype=args.dtype, methods=args.methods, max_new_tokens=args.max_new_tokens,
        warmup=args.warmup, progress=not args.no_progress)
    summary = evaluate_all(args.model, args.profile, args.data, options, args.limit)
    summary['command'] = ['superneuron'] + sys.argv[1:] if sys.argv[1:2] == ['eval'] else []
    out = write_json(summary, args.json or args.profile / 'eval_summary.json')
    table = summary_markdown(summary, summary['command'])
    out.with_suffix('.md').write_text(table)
    print(table)
    print(f'results written to {out} (table: {out.with_suffix(".md")})')
    return 0
