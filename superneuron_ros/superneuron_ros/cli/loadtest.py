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

"""`superneuron loadtest`: the node under load in separate processes over ROS on loopback."""

import argparse
import json
from pathlib import Path
import sys
import tempfile

from superneuron_ros.cli.arguments import positive_int

SCENARIO_NAMES = ('intake', 'burst', 'diagnostics', 'sigint', 'memory')
DATA = Path(__file__).resolve().parents[1] / 'data'


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not WIDTHxHEIGHT, e.g. 1280x720') from None
    return width, height


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `loadtest` subcommand."""
    parser = subparsers.add_parser(
        'loadtest', help='load-test the node: 30 Hz cameras, concurrent calls, shutdown',
        description='Start the superneuron node and helper processes (camera, a plain '
                    'subscriber, Ask clients) over real ROS on loopback and measure: intake '
                    '(frames the node takes against a plain subscriber, standing answers, Ask '
                    'latency against an idle node, main-thread CPU), burst (concurrent calls '
                    'from several processes; answers against sequential calls), diagnostics '
                    '(the /diagnostics period while a 0.3 s stand-in model works through a '
                    'queue), sigint (SIGINT during bursts) and memory (VmRSS over a long '
                    'stream). Figures are reported, not asserted.')
    parser.add_argument('scenarios', nargs='+', choices=SCENARIO_NAMES, metavar='SCENARIO',
                        help=f'one or more of {", ".join(SCENARIO_NAMES)}')
    parser.add_argument('--model', default=str(DATA / 'demo_model'), help='model folder '
                        '(default: the embedded demo model)')
    parser.add_argument('--profiles', default=str(DATA / 'demo_profiles'),
                        help='profiles folder (default: the demo profiles); needs red_present '
                             'and shape_count')
    parser.add_argument('--quantization', default='nf4', help='as the node parameter')
    parser.add_argument('--device', default='cpu', help='as the node parameter')
    parser.add_argument('--format', choices=('raw', 'jpeg'), default='raw',
                        help='camera stream: raw rgb8 Image or JPEG CompressedImage')
    parser.add_argument('--size', type=_size, default=(640, 480), metavar='WxH',
                        help='camera frame size (default 640x480)')
    parser.add_argument('--rate', type=float, default=30.0, help='camera rate, Hz (default 30)')
    parser.add_argument('--ask-rate', type=float, default=5.0, help='Ask calls per second '
                        'during intake (default 5)')
    parser.add_argument('--duration', type=float, default=60.0,
                        help='seconds of camera stream for intake and memory (default 60)')
    parser.add_argument('--sample', type=float, default=60.0,
                        help='seconds between memory samples (default 60)')
    parser.add_argument('--processes', type=positive_int, default=4,
                        help='Ask client processes for burst and sigint (default 4)')
    parser.add_argument('--concurrent', type=positive_int, default=16,
                        help='calls in flight per client process (default 16)')
    parser.add_argument('--bursts', type=positive_int, default=30,
                        help='bursts per client process (default 30)')
    parser.add_argument('--queued', type=positive_int, default=32,
                        help='calls queued on the slow stand-in (default 32)')
    parser.add_argument('--sigint-after', type=float, default=1.0,
                        help='seconds of bursts, once every client is ready, before SIGINT '
                             '(default 1)')
    parser.add_argument('--shm-segment-mb', type=int, default=16,
                        help='Fast DDS shared-memory segment for every process of the test, so '
                             'that a whole frame fits (default 16; 0: Fast DDS defaults, 512 KB)')
    parser.add_argument('--work-dir', help='where logs and results go (default: a temp folder)')
    parser.add_argument('--json', metavar='FILE', default='superneuron_loadtest.json',
                        help='JSON report path (default: superneuron_loadtest.json)')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run each scenario, print its figures and write them all to the JSON report."""
    from superneuron_ros.jsonio import write_json
    from superneuron_ros.lab.loadtest.processes import use_large_shm
    from superneuron_ros.lab.loadtest.scenarios import SCENARIOS
    work = Path(args.work_dir or tempfile.mkdtemp(prefix='superneuron_loadtest_')).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.shm_segment_mb > 0:
        use_large_shm(work, args.shm_segment_mb)
    results = {'command': 'superneuron loadtest ' + ' '.join(sys.argv[2:]), 'runs': []}
    for name in args.scenarios:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        result = SCENARIOS[name](folder, args)
        results['runs'].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != 'samples'}, indent=1,
                         default=str))
        if 'samples' in result:
            for sample in result['samples']:
                print(f"  t={sample['t_s']:7.1f} s  VmRSS {sample['VmRSS']:8.1f} MB  "
                      f"VmHWM {sample['VmHWM']:8.1f} MB  frames {sample['frames']}")
    path = write_json(results, args.json)
    print(f'JSON report: {path} (logs in {work})')
    return 0
