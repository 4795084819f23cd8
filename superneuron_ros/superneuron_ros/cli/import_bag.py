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

"""`superneuron import-bag`: a labelled set (PNG + JSONL) from the frames of a ROS 2 bag."""

import argparse
from pathlib import Path


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of seconds') from None
    if not value >= 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'{text} must be a finite number of seconds >= 0')
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `import-bag` subcommand."""
    parser = subparsers.add_parser(
        'import-bag', help='extract labelled frames from a ROS 2 bag (sqlite3 or mcap)',
        description='Write the frames of an Image or CompressedImage topic of a ROS 2 bag as '
                    'PNG images plus a JSONL labelled set that `superneuron calibrate` reads. '
                    'Labels come from a std_msgs/String topic in the same bag (the latest one '
                    'at each frame; any word that is not a label of the task pauses labelling) '
                    'or from a CSV of time ranges "start,end,label" in seconds from the start of '
                    'the bag. Needs no ROS install (rosbags).')
    parser.add_argument('bag', type=Path, metavar='BAG', help='bag folder (metadata.yaml + '
                        'the .db3 or .mcap files)')
    parser.add_argument('--topic', required=True, metavar='T', help='the image topic')
    parser.add_argument('--task', type=Path, required=True, metavar='TASK.yaml',
                        help='the task file (name, question, labels), as for calibrate')
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument('--label-topic', metavar='L', help='std_msgs/String topic of labels')
    labels.add_argument('--labels', type=Path, metavar='CSV',
                        help='CSV of time ranges with the header start,end,label')
    parser.add_argument('--every', type=_seconds, default=0.0, metavar='SECONDS',
                        help='keep at most one frame per SECONDS of bag time (default: 0, all)')
    parser.add_argument('--out', type=Path, required=True, metavar='DIR',
                        help='output folder; must not exist unless --force')
    parser.add_argument('--force', action='store_true', help='replace an existing DIR')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import the bag and print what was kept and skipped."""
    from superneuron_ros.lab.bags import import_bag, read_label_ranges
    from superneuron_ros.method.tasks import TaskSpec
    task = TaskSpec.from_yaml(args.task)
    ranges = read_label_ranges(args.labels, task) if args.labels is not None else None
    summary = import_bag(args.bag, args.topic, args.out, task, label_topic=args.label_topic,
                         ranges=ranges, every=args.every, force=args.force)
    print(f'{summary.kept} of {summary.frames_seen} frame(s) written to {summary.out}: '
          + ', '.join(f'{label} {n}' for label, n in summary.counts.items()))
    if summary.skipped:
        print('skipped: ' + ', '.join(f'{why} {n}' for why, n in summary.skipped.items()))
    print(f'labelled set: {summary.labelled_set}  (superneuron calibrate --task '
          f'{args.task} --data {summary.labelled_set} ...)')
    return 0
