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

"""Measure what the ~/<camera>/annotated image costs a standing batch, without and with a viewer.

Run with the venv's Python (ROS traffic stays on this machine):

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 .venv/bin/python \
        tools/bench_annotated.py --width 640 --height 480

Prints, per batch, the time AnnotatedImages.answer_batch adds around the answer (the answer
itself is a no-op here): with no subscriber (one subscription count) and with one subscriber
(conversion, drawing and publishing of the frame).
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import rclpy
from sensor_msgs.msg import Image
from superneuron_interfaces.msg import Answer
from superneuron_ros.node.annotated import AnnotatedImages
from superneuron_ros.node.cameras import Frame
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.node.standing import Batch


def _answer(batch, publish) -> None:
    for task in ('door_open', 'person'):
        publish(task, Answer(task=task, label='yes', confidence=0.9), True)


def _per_batch_us(annotated: AnnotatedImages, batch: Batch, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        annotated.answer_batch(batch, _answer, lambda task, msg, yes: None)
        times.append(1e6 * (time.perf_counter() - start))
    return times


def _direct_us(batch: Batch, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        _answer(batch, lambda task, msg, yes: None)
        times.append(1e6 * (time.perf_counter() - start))
    return times


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--idle', type=int, default=5000, help='batches without a viewer')
    parser.add_argument('--viewed', type=int, default=200, help='batches with a viewer')
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node('bench_annotated')
    try:
        annotated = AnnotatedImages(node, ['front'])
        rgb = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), np.uint8)
        batch = Batch(Frame('front', rgb_to_image(rgb), 1, time.monotonic()), (), ())
        direct = _direct_us(batch, args.idle)
        idle = _per_batch_us(annotated, batch, args.idle)
        assert annotated.published == 0
        viewer = node.create_subscription(Image, '~/front/annotated', lambda msg: None, 1)
        viewed = _per_batch_us(annotated, batch, args.viewed)
        assert annotated.published == args.viewed
        node.destroy_subscription(viewer)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    result = {
        'frame': f'{args.width}x{args.height}',
        'answer alone, median us': round(statistics.median(direct), 2),
        'no subscriber, median us': round(statistics.median(idle), 2),
        'no subscriber, p95 us': round(float(np.percentile(idle, 95)), 2),
        'one subscriber, median ms': round(statistics.median(viewed) / 1e3, 3),
        'one subscriber, p95 ms': round(float(np.percentile(viewed, 95)) / 1e3, 3),
        'batches': {'idle': args.idle, 'viewed': args.viewed},
    }
    sys.stdout.write(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
