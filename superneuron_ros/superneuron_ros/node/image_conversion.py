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
from superneuron_ros.errors import ImageError


def _message_types() -> tuple[type, type]:
    """
    Return (Image, CompressedImage) of sensor_msgs, imported on first use.

    The decoders read only the messages' fields, so they also convert messages that are not
    rclpy's (``superneuron import-bag`` hands them rosbags' messages, without a ROS install).
    """
    from sensor_msgs.msg import CompressedImage, Image
    return Image, CompressedImage


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


# Compressed formats accepted, as named in the README: their size is read from the header first.
COMPRESSED_FORMATS = ('jpeg', 'png')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): they carry the image size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def check_size(height: int, width: int, max_pixels: int, max_aspect_ratio: float = 0.0) -> None:
    """
    Refuse an empty image, one over `max_pixels` or one more elongated than `max_aspect_ratio`.

    A limit of 0 disables that check. The aspect-ratio bound exists because image processors
    scale the short side up to their input size: a 1x65536 image would become gigabytes.
    """
    if height <= 0 or width <= 0:
        raise ImageError(f'the image is empty ({width}x{height}); publish an image with pixels')
    if max_pixels > 0 and height * width > max_pixels:
        raise ImageError(
            f'the image has {width}x{height} = {width * height} pixels, more than '
            f'max_image_pixels = {max_pixels}; publish a smaller image or raise the '
            'max_image_pixels parameter')
    ratio = max(height, width) / min(height, width)
    if max_aspect_ratio > 0 and ratio > max_aspect_ratio:
        raise ImageError(
            f'the image is {width}x{height}, an aspect ratio of {ratio:.1f}, more than '
            f'max_aspect_ratio = {max_aspect_ratio:g}; crop or resize it, or raise the '
            'max_aspect_ratio parameter')


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError('the JPEG data is corrupt (no marker where one was expected); '
                             'publish a valid JPEG')
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            return (int.from_bytes(data[pos + 5:pos + 7], 'big'),
                    int.from_bytes(data[pos + 7:pos + 9], 'big'))
        pos += 2 + length
    raise ImageError('the JPEG data has no frame header with the image size; publish a valid '
                     'JPEG')


def compressed_size(data: bytes) -> tuple[str, int, int]:
    """
    Return (format, height, width) read from a JPEG or PNG header, without decoding pixels.

    Raises ImageError for other formats and for headers that do not say the size.
    """
    if data[:8] == _PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b'IHDR':
            raise ImageError('the PNG data has no IHDR header; publish a valid PNG')
        return ('png', int.from_bytes(data[20:24], 'big'), int.from_bytes(data[16:20], 'big'))
    if data[:2] == b'\xff\xd8':
        return ('jpeg', *_jpeg_size(data))
    raise ImageError(f'the compressed image is neither JPEG nor PNG (first bytes '
                     f'{bytes(data[:4]).hex()}); publish one of {", ".join(COMPRESSED_FORMATS)}')


def check_msg(msg: Any, max_pixels: int = 0, max_aspect_ratio: float = 0.0) -> None:
    """
    Check an image message's size against the limits from its fields or header only.

    Cheap (no pixel is decoded), so callbacks can refuse a bad image before queueing it.
    """
    Image, CompressedImage = _message_types()
    if isinstance(msg, CompressedImage):
        data = bytes(msg.data[:65536]) if len(msg.data) else b''
        if not data:
            raise ImageError('the compressed image has no data; publish a non-empty image')
        _, height, width = compressed_size(data)
    elif isinstance(msg, Image):
        height, width = int(msg.height), int(msg.width)
    else:
        raise ImageError(f'cannot convert a {type(msg).__name__} to an image; send a '
                         'sensor_msgs/Image or sensor_msgs/CompressedImage')
    check_size(height, width, max_pixels, max_aspect_ratio)


def image_to_rgb(msg: Any, max_pixels: int = 0, max_aspect_ratio: float = 0.0
                 ) -> np.ndarray:
    """
    Convert a sensor_msgs/Image to a new (H, W, 3) uint8 RGB array.

    Supports the encodings in SUPPORTED_ENCODINGS, padded rows (step larger than a row's bytes)
    and big-endian 16-bit data; mono16 is scaled to 8 bit (value / 256). `max_pixels` and
    `max_aspect_ratio` > 0 refuse larger or more elongated images (see :func:`check_size`).
    """
    encoding = msg.encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported image encoding {msg.encoding!r}; publish one of '
                         f'{", ".join(SUPPORTED_ENCODINGS)} or a CompressedImage')
    channels, size, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(height, width, max_pixels, max_aspect_ratio)
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


def compressed_to_rgb(msg: Any, max_pixels: int = 0,
                      max_aspect_ratio: float = 0.0) -> np.ndarray:
    """
    Decode a JPEG or PNG sensor_msgs/CompressedImage to a new (H, W, 3) uint8 RGB array.

    The size is read from the header and checked against the limits before anything is
    decoded, so a small file that claims a huge image costs nothing.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError('the compressed image has no data; publish a non-empty image')
    kind, height, width = compressed_size(data[:65536].tobytes())
    check_size(height, width, max_pixels, max_aspect_ratio)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # [H, W, 3] BGR, or None
    if bgr is None:
        raise ImageError(f'cannot decode the compressed {kind} image (format field '
                         f'{msg.format!r}); publish valid JPEG or PNG data')
    if bgr.shape[0] * bgr.shape[1] != height * width:
        raise ImageError(f'the {kind} header says {width}x{height} but the data decodes to '
                         f'{bgr.shape[1]}x{bgr.shape[0]}; publish a valid image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # [H, W, 3]


def msg_to_rgb(msg: Any, max_pixels: int = 0, max_aspect_ratio: float = 0.0) -> np.ndarray:
    """Convert an Image or CompressedImage message to a new (H, W, 3) uint8 RGB array."""
    Image, CompressedImage = _message_types()
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, max_pixels, max_aspect_ratio)
    if isinstance(msg, Image):
        return image_to_rgb(msg, max_pixels, max_aspect_ratio)
    raise ImageError(f'cannot convert a {type(msg).__name__} to an image; send a '
                     'sensor_msgs/Image or sensor_msgs/CompressedImage')


def rgb_to_image(rgb: np.ndarray, header: Any = None) -> Any:
    """Build an rgb8 sensor_msgs/Image from an (H, W, 3) uint8 RGB array."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f'expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}')
    msg = _message_types()[0]()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg
