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

"""`superneuron scenes`: write generated shape scenes as task files and labelled sets."""

import argparse
from pathlib import Path

from superneuron_ros.cli.arguments import image_size, positive_int


def _task_list(text: str) -> list[str]:
    """Parse a comma-separated list of task names."""
    names = [name.strip() for name in text.split(',') if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError('name at least one task, e.g. red_present,shape_count')
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `scenes` subcommand."""
    parser = subparsers.add_parser(
        'scenes', help='write generated scenes: images, task files and labelled sets',
        description='Write N generated shape scenes per task into DIR: images/*.png, '
                    'tasks/<task>.yaml, <task>.jsonl (balanced labels) and manifest.json. '
                    'The same seed always gives the same files.')
    parser.add_argument('--out', type=Path, required=True, metavar='DIR',
                        help='output folder (created if missing)')
    parser.add_argument('--n', type=positive_int, default=200, metavar='N',
                        help='examples per task (default: 200)')
    parser.add_argument('--seed', type=int, default=0, metavar='S', help='seed (default: 0)')
    parser.add_argument('--size', type=image_size, default=(96, 96), metavar='S|HxW',
                        help='image size in pixels (default: 96)')
    parser.add_argument('--tasks', type=_task_list, default=None, metavar='A,B',
                        help='comma-separated task names (default: all; see --list-tasks)')
    parser.add_argument('--varied', action='store_true',
                        help='varied scenes, as the demo model trains on: coloured backgrounds, '
                             'brightness x0.6-1.25, more noise')
    parser.add_argument('--list-tasks', action='store_true',
                        help='print the available tasks and exit')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset described by the parsed arguments and print a summary."""
    from superneuron_ros.lab.scene_datasets import write_dataset
    from superneuron_ros.lab.scenes import TASKS
    if args.list_tasks:
        for name, spec in TASKS.items():
            print(f'{name:18s} {spec.question}  [{", ".join(spec.labels)}]')
        return 0
    manifest = write_dataset(args.out, n=args.n, seed=args.seed, size=args.size,
                             tasks=args.tasks, varied=args.varied)
    height, width = manifest['size']
    total = sum(sum(entry['counts'].values()) for entry in manifest['tasks'].values())
    print(f'wrote {total} images ({height}x{width}, seed {manifest["seed"]}) for '
          f'{len(manifest["tasks"])} task(s) to {args.out}')
    for name, entry in manifest['tasks'].items():
        counts = ', '.join(f'{label}: {count}' for label, count in entry['counts'].items())
        print(f'  {entry["labelled_set"]:24s} {counts}')
    return 0
