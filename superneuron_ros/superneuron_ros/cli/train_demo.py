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

"""`superneuron train-demo`: train the small demo VLM on generated scenes and evaluate it."""

import argparse
from pathlib import Path
import shlex

from superneuron_ros.cli.arguments import positive_int


def _positive_float(text: str) -> float:
    """Parse a number greater than 0 for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f'{value} must be greater than 0')
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `train-demo` subcommand."""
    parser = subparsers.add_parser(
        'train-demo', help='train the small demo VLM on generated scenes (CPU, ~90 min)',
        description='Build the demo LLaVA preset with seeded random weights, train it with AdamW '
                    'on question/answer pairs about generated scenes until the time or step '
                    'budget is spent, save it (float16 safetensors + processor) into DIR, then '
                    'measure it by greedy generation on held-out scenes and write '
                    'DIR/training_report.json.')
    parser.add_argument('--out', type=Path, required=True, metavar='DIR',
                        help='output model folder (created if missing, files overwritten)')
    parser.add_argument('--seed', type=int, default=0, help='seed (default: 0)')
    parser.add_argument('--minutes', type=_positive_float, default=85.0,
                        help='training time budget in minutes (default: 85)')
    parser.add_argument('--steps', type=positive_int, default=None,
                        help='step budget (default: none; with --minutes, whichever ends first)')
    parser.add_argument('--batch-size', type=positive_int, default=16,
                        help='images per step, each with several questions (default: 16)')
    parser.add_argument('--lr', type=_positive_float, default=1e-3,
                        help='peak learning rate (default: 1e-3)')
    parser.add_argument('--threads', type=positive_int, default=2,
                        help='CPU threads for torch (default: 2; on a machine busy with other '
                             'work 1 can be faster)')
    parser.add_argument('--init', type=Path, default=None, metavar='DIR',
                        help='continue training from the model in DIR (written by train-demo) '
                             'instead of seeded random weights')
    parser.add_argument('--grow-at', type=float, default=None, metavar='FRACTION',
                        help='train the even-numbered decoder layers only for this fraction of '
                             'the budget, then grow to full depth, each new layer starting as '
                             'a copy of the one before with zero output projections (default: '
                             '0.5; 0 with --init; 0: full depth from the start)')
    parser.add_argument('--aux-weight', type=float, default=1.0, metavar='W',
                        help='weight of the vision read-out loss: linear layers on the '
                             'projector output predict every asked answer (averaged over the '
                             'image tokens) and, per image token, the colour under it and its '
                             'column and row (trained along, never saved; default: 1; 0: none)')
    parser.add_argument('--device', default='cpu',
                        help='where to train: cpu, cuda or cuda:N (default: cpu); the '
                             'evaluation loads the saved model as load_model does (auto)')
    parser.add_argument('--eval-per-task', type=int, default=150, metavar='N',
                        help='held-out scenes per task for the final evaluation; 0 skips it '
                             '(default: 150)')
    parser.add_argument('--eval-seed', type=int, default=1000,
                        help='seed of the held-out scenes (default: 1000)')
    parser.add_argument('--eval-only', action='store_true',
                        help='do not train: evaluate the model already in DIR (written by '
                             'train-demo) and add the results to its training_report.json')
    parser.add_argument('--check-every', type=int, default=100, metavar='STEPS',
                        help='steps between quick held-out checks in the log; 0: never '
                             '(default: 100)')
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """Return the `superneuron train-demo` command line that reproduces `args`."""
    words = ['superneuron', 'train-demo', '--out', str(args.out), '--seed', str(args.seed),
             '--minutes', f'{args.minutes:g}', '--batch-size', str(args.batch_size),
             '--lr', f'{args.lr:g}', '--threads', str(args.threads),
             '--eval-per-task', str(args.eval_per_task), '--eval-seed', str(args.eval_seed),
             '--check-every', str(args.check_every), '--device', args.device,
             '--aux-weight', f'{args.aux_weight:g}']
    if args.steps is not None:
        words += ['--steps', str(args.steps)]
    if args.grow_at is not None:
        words += ['--grow-at', f'{args.grow_at:g}']
    if args.init is not None:
        words += ['--init', str(args.init)]
    if args.eval_only:  # the training options do not apply
        words = ['superneuron', 'train-demo', '--out', str(args.out), '--eval-only',
                 '--threads', str(args.threads), '--eval-per-task', str(args.eval_per_task),
                 '--eval-seed', str(args.eval_seed)]
    return ' '.join(shlex.quote(word) for word in words)


def _grow_at(args: argparse.Namespace) -> float:
    """Return the growing point: as given, else 0.5 from random weights and 0 with --init."""
    if args.grow_at is not None:
        return args.grow_at
    return 0.0 if args.init is not None else 0.5


def run(args: argparse.Namespace) -> int:
    """Train, save and evaluate the demo model; print the per-task accuracy."""
    from superneuron_ros.lab.train import evaluate_into_report, TrainConfig, train_demo
    if args.eval_only:
        import torch
        torch.set_num_threads(args.threads)
        report = evaluate_into_report(args.out, args.eval_per_task, args.eval_seed, 96,
                                      command=command_line(args))
        _print_accuracy(report)
        return 0
    config = TrainConfig(seed=args.seed, minutes=args.minutes, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                         check_every=args.check_every, device=args.device,
                         grow_at=_grow_at(args), aux_weight=args.aux_weight)
    report = train_demo(args.out, config, eval_per_task=args.eval_per_task,
                        eval_seed=args.eval_seed, command=command_line(args), init=args.init)
    print(f'trained {report["steps"]} steps in {report["minutes"]:.1f} min, final loss '
          f'{report["final_loss"]:.4f}; model ({report["size_bytes"] / 1e6:.1f} MB) in {args.out}')
    _print_accuracy(report)
    return 0


def _print_accuracy(report: dict) -> None:
    """Print the per-task accuracy of each evaluation condition with its interval."""
    for condition, tasks in report.get('per_task', {}).items():
        print(f'{condition}:')
        for task, entry in tasks.items():
            low, high = entry['wilson95']
            print(f'  {task:18s} {100 * entry["accuracy"]:5.1f}%  [{100 * low:.1f}, '
                  f'{100 * high:.1f}]  n={entry["n"]}')
