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
`superneuron demo`: the whole product, for real, on the embedded demo model.

It starts the superneuron node in its own process (the shipped demo model and profiles), scene
camera processes publishing generated scenes (front as Image, rear as CompressedImage, and an
arm camera for teaching), and a client in this process that listens to the standing-task answers
and calls the Ask service. Then it teaches the node a question it was not calibrated for: it
records about 200 arm-camera frames labelled from the camera's ground truth (~/record), calls
~/teach, makes the new task standing and asks it about fresh frames. It prints a live table
(question, answer, truth, confidence, latency) and a summary: accuracy per task, p50/p95
latency, frames answered and skipped, and the teaching figures (time from the first recorded
frame to the first answer, accuracy on fresh frames with a Wilson interval, standing latency
before and during the teach). Nothing is faked: every answer comes from the node over ROS.
"""

import argparse
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

DATA = Path(__file__).resolve().parents[1] / 'data'
NODE_NAME = 'superneuron'
TEACH_TASK = 'yellow_present'
# Load the decoder at least this deep (room to teach), and search the taught task up to
# TEACH_MAX_LAYER: presence is read early, and fewer layers keep the teach short.
NODE_MAX_EXIT_LAYER, TEACH_MAX_LAYER = 4, 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `demo` subcommand."""
    parser = subparsers.add_parser(
        'demo', help='run the node, a scene camera and a client on the embedded demo model',
        description=__doc__.strip().split('\n\n')[1])
    parser.add_argument('--duration', type=float, default=40.0,
                        help='seconds to run before the summary with --no-teach (default 40)')
    parser.add_argument('--no-teach', action='store_true',
                        help='skip the teaching part (record, ~/teach, the new question)')
    parser.add_argument('--teach-task', default=TEACH_TASK,
                        help=f'scene task taught at run time (default {TEACH_TASK})')
    parser.add_argument('--record', type=int, default=200, help='frames recorded (default 200)')
    parser.add_argument('--record-rate', type=float, default=10.0,
                        help='frames recorded per second (the arm camera runs at this rate)')
    parser.add_argument('--max-exit-layer', type=int, default=NODE_MAX_EXIT_LAYER,
                        help='the node loads the decoder at least this deep, room to teach '
                             f'(default {NODE_MAX_EXIT_LAYER}); the taught task is searched up '
                             f'to layer {TEACH_MAX_LAYER} at most')
    parser.add_argument('--before', type=float, default=5.0,
                        help='seconds of standing answers before recording starts (default 5)')
    parser.add_argument('--after', type=float, default=10.0,
                        help='seconds the new question is answered after the teach (default 10; '
                             'more gives a tighter interval and a longer demo)')
    parser.add_argument('--check', type=int, default=100, metavar='N',
                        help='fresh scenes the new question is asked about right after the '
                             'teach, sent in the request (default 100; at most 20 s)')
    parser.add_argument('--forever', action='store_true', help='run until Ctrl-C')
    parser.add_argument('--rate', type=float, default=2.0, help='camera frames per second')
    parser.add_argument('--ask-rate', type=float, default=0.5,
                        help='Ask calls per second (default 0.5: more piles up in the queue of '
                             'a busy 2-core machine)')
    parser.add_argument('--model', default=str(DATA / 'demo_model'), help='model folder')
    parser.add_argument('--profiles', default=str(DATA / 'demo_profiles'),
                        help='profile folder (or a folder of them)')
    parser.add_argument('--quantization', default='nf4', choices=('nf4', 'fp4', 'int8', 'none'),
                        help='must match the quantization the profiles were calibrated with')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--seed', type=int, default=0, help='scene seed')
    parser.add_argument('--json', help='also write the summary to this JSON file')
    parser.set_defaults(func=run)


def _plan(profile_root: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Choose standing tasks and Ask calls from the tasks the shipped profiles define."""
    from superneuron_ros.method.profiles import find_profiles, Profile
    tasks = sorted(Profile.load(path).task.name for path in find_profiles([profile_root]))
    presence = [t for t in tasks if t.endswith('_present')]
    standing = [f'{t}@front' for t in tasks] + [f'{t}@rear:1.0' for t in presence[:1]]
    asked = [(t, 'rear') for t in tasks]
    return tasks, standing, asked


def _node_params(args: argparse.Namespace, standing: list[str], folder: Path) -> Path:
    import yaml
    params = {'/**': {'ros__parameters': {
        'model_path': str(Path(args.model).resolve()), 'quantization': args.quantization,
        'device': args.device, 'profiles': [str(Path(args.profiles).resolve())],
        'cameras': ['front', 'rear', 'arm'],
        'front': {'topic': '/front/image_raw', 'transport': 'raw'},
        'rear': {'topic': '/rear/image_raw/compressed', 'transport': 'compressed'},
        'arm': {'topic': '/arm/image_raw', 'transport': 'raw'},
        'max_exit_layer': args.max_exit_layer, 'data_dir': str(folder / 'data'),
        'standing_tasks': standing, 'max_image_age': 5.0, 'diagnostics_period': 1.0}}}
    path = folder / 'superneuron_demo.yaml'
    path.write_text(yaml.safe_dump(params))
    return path


def camera_side(model: str) -> int:
    """Return the side of the images the model's processor takes (LLaVA: its crop size)."""
    path = Path(model) / 'processor_config.json'
    try:
        crop = json.loads(path.read_text(encoding='utf-8'))['image_processor']['crop_size']
        return int(crop['height'])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f'cannot read the image size from {path}: {exc}') from exc


def _start(command: list[str], log: Path) -> subprocess.Popen:
    # Run from the log folder: started from a checkout's root, Python would take the ament
    # package folder `superneuron_ros/` there for the Python package of the same name.
    handle = open(log, 'w')
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent,
                            start_new_session=True)


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def run(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when every task was answered by the node."""
    from rich.console import Console
    from rich.table import Table
    console = Console() if sys.stdout.isatty() else Console(width=120)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    for what, path in (('model', args.model), ('profiles', args.profiles)):
        if not Path(path).exists():
            console.print(f'[red]demo {what} not found at {path}[/red]: the embedded demo ships '
                          'them in superneuron_ros/data (see `superneuron train-demo`)')
            return 2
    tasks, standing, asked = _plan(args.profiles)
    try:
        side = camera_side(args.model)  # the scenes are drawn at the size the model reads
    except RuntimeError as exc:
        console.print(f'[red]{exc}[/red]')
        return 2
    logs = Path(tempfile.mkdtemp(prefix='superneuron_demo_'))
    params = _node_params(args, standing, logs)
    console.print(f'[bold]superneuron demo[/bold]: tasks {", ".join(tasks)}; ROS_DOMAIN_ID '
                  f'{os.environ["ROS_DOMAIN_ID"]}, loopback only; logs in {logs}')
    python = sys.executable
    node = _start([python, '-m', 'superneuron_ros.node.main', '--ros-args',
                   '--params-file', str(params), '-r', f'__node:={NODE_NAME}'],
                  logs / 'node.log')
    camera = _start([python, '-m', 'superneuron_ros.lab.demo.camera', '--ros-args',
                     '-p', 'cameras:=[front,rear]', '-p', 'compressed:=[rear]',
                     '-p', f'rate:={float(args.rate)}', '-p', f'seed:={args.seed}',
                     '-p', f'size:={side}'],
                    logs / 'camera.log')
    arm = _start([python, '-m', 'superneuron_ros.lab.demo.camera', '--ros-args',
                  '-r', '__node:=arm_camera', '-p', 'cameras:=[arm]',
                  '-p', f'rate:={float(args.record_rate)}', '-p', f'seed:={args.seed + 7}',
                  '-p', f'size:={side}'],
                 logs / 'arm_camera.log')
    started = time.monotonic()
    try:
        summary = _run_client(args, console, standing, asked, side)
    except (TimeoutError, RuntimeError) as exc:
        console.print(f'[red]{exc}[/red]')
        console.print((logs / 'node.log').read_text()[-3000:])
        return 1
    finally:
        codes = {'node': _stop(node), 'camera': _stop(camera), 'arm_camera': _stop(arm)}
    summary['wall_s'] = time.monotonic() - started
    _print_summary(console, Table, summary, codes)
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, 'exit_codes': codes}, indent=2))
    answered = {(row['task'], row['source']) for row in summary['rows'] if row['answers']}
    missing = [t for t in tasks if (t, 'standing') not in answered]
    ok = not missing and any(s == 'ask' for _, s in answered) and not any(codes.values())
    if missing:
        console.print(f'[red]no standing answers for {missing}[/red]')
    teaching = summary.get('teaching')
    if teaching is not None and not teaching['fresh']['scored']:
        console.print(f'[red]the taught task {teaching["task"]} was never answered[/red]')
        ok = False
    return 0 if ok else 1


def _run_client(args, console, standing: list[str], asked: list[tuple[str, str]],
                side: int) -> dict:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from superneuron_ros.lab.demo.client import DemoClient
    context = rclpy.Context()
    rclpy.init(context=context)
    client = DemoClient(f'/{NODE_NAME}', standing, asked,
                        args.ask_rate, image_every=3, size=side, seed=args.seed + 1000,
                        context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        client.wait_ready(timeout=180.0)
        started = time.monotonic()
        client.start_asking()
        if args.no_teach:
            _live(console, client, None if args.forever else args.duration)
            return client.summary()
        from superneuron_ros.lab.demo.teach_flow import TeachDemo, teaching_summary
        demo = TeachDemo(client, args.teach_task, 'arm', args.record, args.record_rate,
                         min(TEACH_MAX_LAYER, args.max_exit_layer), log=lambda text: console.print(
                             f'[bold cyan]{text}[/bold cyan]', highlight=False))
        failure: list[Exception] = []
        flow = threading.Thread(target=_teach_flow, args=(demo, standing, args, failure),
                                daemon=True)
        flow.start()
        _live(console, client, None, until=lambda: not flow.is_alive())
        if failure:
            raise failure[0]
        _live(console, client, None if args.forever else args.after)
        return {**client.summary(), 'teaching': teaching_summary(client, demo, started)}
    finally:
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)


def _teach_flow(demo, standing: list[str], args: argparse.Namespace,
                failure: list[Exception]) -> None:
    """Wait, record, teach, then serve the new task (in a thread: the live table goes on)."""
    try:
        time.sleep(args.before)
        demo.record()
        demo.teach()
        demo.serve(standing)
        demo.check(args.check)
    except Exception as exc:  # shown by the main thread, which ends the demo with it
        failure.append(exc if isinstance(exc, (TimeoutError, RuntimeError))
                       else RuntimeError(f'{type(exc).__name__}: {exc}'))


def _live(console, client, duration: float | None, until=lambda: False) -> None:
    """Print each answer as it is scored (half a second late, so its truth has arrived)."""
    console.print(f'{"source":<10} {"camera":<8} {"question":<44} {"answer":<8} {"truth":<8} '
                  f'{"conf":>5} {"ms":>7}', highlight=False)
    shown = 0
    start = time.monotonic()
    try:
        while (duration is None or time.monotonic() - start < duration) and not until():
            time.sleep(0.5)
            with client.lock:
                pending = client.events[shown:]
            for event in pending:
                truth = client.resolve(event)
                mark = ('[green]ok[/green]' if truth == event.label else
                        '[dim]n/a[/dim]' if truth is None else '[red]wrong[/red]')
                console.print(f'{event.source:<10} {event.camera:<8} {event.question[:44]:<44} '
                              f'{event.label:<8} {str(truth):<8} {event.confidence:5.2f} '
                              f'{event.latency_ms:7.1f} {mark}', highlight=False)
            shown += len(pending)
    except KeyboardInterrupt:
        pass


def _print_summary(console, table_class, summary: dict, codes: dict) -> None:
    table = table_class(title='summary: answers from the superneuron node')
    for column in ('task', 'source', 'answers', 'scored', 'accuracy', 'p50 ms', 'p95 ms'):
        table.add_column(column, justify='left' if column in ('task', 'source') else 'right')
    for row in summary['rows']:
        table.add_row(row['task'], row['source'], str(row['answers']), str(row['scored']),
                      f'{row["accuracy"]:.3f}', f'{row["p50_ms"]:.1f}', f'{row["p95_ms"]:.1f}')
    console.print(table)
    for name, frames in summary['frames'].items():
        console.print(f'frames {name}: answered {frames["answered"]}, skipped {frames["skipped"]}')
    if summary['failures']:
        console.print(f'{len(summary["failures"])} Ask call(s) failed, e.g. '
                      f'{summary["failures"][0]}')
    teaching = summary.get('teaching')
    if teaching is not None:
        _print_teaching(console, teaching)
    console.print(f'processes exited with {codes}; the demo ran {summary["wall_s"]:.0f} s')


def _print_teaching(console, t: dict) -> None:
    fresh, latency = t['fresh'], t['standing_latency']
    low, high = fresh['wilson95']
    console.print(
        f'[bold]taught {t["task"]}[/bold] at run time: {t["recorded"]} frames recorded in '
        f'{t["record_s"]:.1f} s {t["labels"]}, ~/teach took {t["teach_s"]:.1f} s (exit layer '
        f'{t["exit_layer"]}, cross-validated {t["cv_accuracy"]:.3f} +- '
        f'{t["cv_accuracy_std"]:.3f}, {t["cv_protocol"]})', highlight=False)
    console.print(f'  first recorded frame to first answer: '
                  f'{t["first_record_to_first_answer_s"]:.1f} s', highlight=False)
    console.print(f'  fresh frames: accuracy {fresh["accuracy"]:.3f} on n={fresh["scored"]} '
                  f'(95% Wilson {low:.3f}-{high:.3f}; {fresh["by_source"]})', highlight=False)
    console.print(f"  the model's own accuracy: {t['model_accuracy_note'] or t['model_accuracy']}",
                  highlight=False)
    console.print('  standing answers, p95 latency and longest gap on front: ' + ', '.join(
        f'{name} {row["p95_ms"]:.0f} ms / {row["longest_gap_s"]:.1f} s (n={row["answers"]})'
        for name, row in latency.items()), highlight=False)
