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
The ``~/<camera>/annotated`` debug image: the frame with the standing answers drawn on it.

For ``rqt_image_view``, like the annotated images of other perception nodes. One rgb8
sensor_msgs/Image per camera, with the header of the frame that was answered; every standing
task's newest answer on that camera is drawn as ``task: label (confidence)``. An image is built
only when a standing batch of that camera has just been answered and someone subscribes to the
topic, so it comes at most at the answer rate; with no subscriber the cost is one subscription
count per batch (``tools/bench_annotated.py`` measures both cases).
"""

import threading
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from sensor_msgs.msg import Image
from superneuron_ros.node.image_conversion import msg_to_rgb, rgb_to_image

# Frames smaller than this (shorter side, pixels) are scaled up so that the text stays legible.
MIN_SIDE = 240
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_answers(rgb: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """
    Return a copy of an (H, W, 3) uint8 RGB frame with one text line per answer, top left.

    Small frames are first scaled up (nearest neighbour, integer factor) to at least MIN_SIDE.
    """
    factor = max(1, -(-MIN_SIDE // max(1, min(rgb.shape[:2]))))
    image = (cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
             if factor > 1 else rgb.copy())
    scale = max(0.4, min(image.shape[:2]) / 600)
    thickness = max(1, round(scale * 2))
    y = 0
    for line in lines:
        (width, height), baseline = cv2.getTextSize(line, _FONT, scale, thickness)
        y += height + baseline + 4
        cv2.rectangle(image, (0, y - height - baseline - 4), (width + 8, y), (0, 0, 0), -1)
        cv2.putText(image, line, (4, y - baseline - 2), _FONT, scale, (255, 255, 0), thickness,
                    cv2.LINE_AA)
    return np.ascontiguousarray(image)


def answer_line(task: str, label: str, confidence: float) -> str:
    """Return the text drawn for one answer."""
    return f'{task}: {label} ({confidence:.2f})'


class AnnotatedImages:
    """One ``~/<camera>/annotated`` publisher per camera, fed by the standing-task batches."""

    def __init__(self, node: Any, cameras: Sequence[str], qos: Any = 1) -> None:
        """Create the publishers on `node` (reliable, depth 1: a viewer only wants the newest)."""
        self.publishers = {camera: node.create_publisher(Image, f'~/{camera}/annotated', qos)
                           for camera in cameras}
        self._latest: dict[str, dict[str, str]] = {camera: {} for camera in cameras}
        self._lock = threading.Lock()
        self.published = 0

    def endpoints(self, destroy: Callable[[Any], Any]) -> list[tuple[Callable, Any]]:
        """Return (destroy, publisher) pairs, for the node's endpoint list."""
        return [(destroy, publisher) for publisher in self.publishers.values()]

    def wanted(self, camera: str) -> bool:
        """Whether someone subscribes to the annotated image of `camera`."""
        publisher = self.publishers.get(camera)
        return publisher is not None and publisher.get_subscription_count() > 0

    def answer_batch(self, batch: Any, answer: Callable[[Any, Callable], None],
                     publish: Callable[[str, str, Any, bool | None], None]) -> None:
        """
        Run ``answer(batch, publish)``; then, if someone listens, publish the annotated frame.

        The answers of the batch are collected on their way to `publish`; every camera keeps
        the newest answer of each task, so tasks at a lower rate stay on the image.
        """
        camera = batch.frame.camera
        latest = self._latest.get(camera)
        if latest is None or not self.wanted(camera):
            if latest:
                latest.clear()  # no stale line when a viewer subscribes again later
            return answer(batch, publish)

        def collect(task: str, camera: str, msg: Any, yes: bool | None) -> None:
            publish(task, camera, msg, yes)
            with self._lock:
                latest[task] = answer_line(task, msg.label, msg.confidence)

        answer(batch, collect)
        with self._lock:
            lines = [latest[task] for task in sorted(latest)]
        if lines:
            self.publish(camera, batch.frame.msg, lines)

    def publish(self, camera: str, frame_msg: Any, lines: Sequence[str]) -> None:
        """Draw `lines` on the frame of `frame_msg` and publish it with the frame's header."""
        image = draw_answers(msg_to_rgb(frame_msg), lines)
        self.publishers[camera].publish(rgb_to_image(image, frame_msg.header))
        self.published += 1
