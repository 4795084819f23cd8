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
Image messages to and from numpy, without cv_bridge: the only place the node converts images.

Every function returning an image returns a new (H, W, 3) uint8 RGB array, the form the core
expects. Problems raise :class:`~superneuron_ros.errors.ImageError` with a message that says
what to change on the publishing side.
"""

from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from superneuron_ros.errors import ImageError

# encoding -> (channels, bytes per channel, channel order as read)
ENCODINGS = {
    'rgb8': (3, 1, 'rgb'),
    'bgr8': (3, 1, 'bgr'),
    'rgba8': (4, 1, 'rgba'),
    'bgra8': (4, 1, 'bgra'),
    'mono8': (1, 1, 'mono'),
    'mono16': (1, 2, 'mono'),
}
SUPPORTED_ENCODINGS = tuple(ENCODINGS)


def _check_pixels(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageError(f'the image is empty ({width}x{height}); publish an image with pixels')
    if max_pixels > 0 and height * width > max_pixels:
        raise ImageError(
            f'the image has {width}x{height} = {width * height} pixels, more than '
            f'max_image_pixels = {max_pixels}; publish a smaller image or raise the '
            'max_image_pixels parameter')


def image_to_rgb(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """
    Convert a sensor_msgs/Image to a new (H, W, 3) uint8 RGB array.

    Supports the encodings in SUPPORTED_ENCODINGS, padded rows (step larger than a row's bytes)
    and big-endian 16-bit data; mono16 is scaled to 8 bit (value / 256). `max_pixels` > 0
    refuses larger images.
    """
    encoding = msg.encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported image encoding {msg.encoding!r}; publish one of '
                         f'{", ".join(SUPPORTED_ENCODINGS)} or a CompressedImage')
    channels, size, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_pixels(height, width, max_pixels)
    row_bytes = width * channels * size
    if step < row_bytes:
        raise ImageError(f'step {step} is smaller than width x bytes per pixel = {row_bytes} '
                         f"for {encoding}; fix the publisher's step field")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageError(f'the image data has {data.size} bytes but step x height = '
                         f"{step} x {height} = {step * height}; fix the publisher's data, step "
                         'or height')
    rows = data.reshape(height, step)[:, :row_bytes]  # [H, row_bytes], padding dropped
    if size == 2:
        dtype = np.dtype('>u2' if msg.is_bigendian else '<u2')
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = (pixels >> 8).astype(np.uint8)  # [H, W, C], 16 -> 8 bit
    else:
        pixels = rows.reshape(height, width, channels)  # [H, W, C]
    if order == 'mono':
        return np.repeat(pixels, 3, axis=2)  # [H, W, 3], a new array
    if order in ('bgr', 'bgra'):
        return np.array(pixels[:, :, 2::-1], order='C')  # [H, W, 3], a copy
    return np.array(pixels[:, :, :3], order='C')  # [H, W, 3], a copy


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = 0) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) to a new (H, W, 3) uint8 RGB array."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError('the compressed image has no data; publish a non-empty image')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # [H, W, 3] BGR, or None
    if bgr is None:
        raise ImageError(f'cannot decode the compressed image (format {msg.format!r}); publish '
                         'JPEG or PNG data')
    _check_pixels(bgr.shape[0], bgr.shape[1], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # [H, W, 3]


def msg_to_rgb(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """Convert an Image or CompressedImage message to a new (H, W, 3) uint8 RGB array."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, max_pixels)
    if isinstance(msg, Image):
        return image_to_rgb(msg, max_pixels)
    raise ImageError(f'cannot convert a {type(msg).__name__} to an image; send a '
                     'sensor_msgs/Image or sensor_msgs/CompressedImage')


def rgb_to_image(rgb: np.ndarray, header: Any = None) -> Image:
    """Build an rgb8 sensor_msgs/Image from an (H, W, 3) uint8 RGB array."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f'expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg
