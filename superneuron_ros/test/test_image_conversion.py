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

"""Tests of Image / CompressedImage to RGB conversion, without cv_bridge."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from superneuron_ros.errors import ImageError
from superneuron_ros.node.image_conversion import (check_msg, compressed_size, compressed_to_rgb,
                                                   image_to_rgb, msg_to_rgb,
                                                   rgb_to_image)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)  # [H, W, 3]


def _image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Build an Image from [H, W, C] pixels, each row followed by `pad` junk bytes."""
    height, width = pixels.shape[:2]
    raw = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    rows = raw.reshape(height, -1).view(np.uint8)  # [H, row_bytes]
    junk = np.full((height, pad), 0xAB, dtype=np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                step=rows.shape[1] + pad)
    msg.data = np.concatenate([rows, junk], axis=1).tobytes()
    return msg


@pytest.mark.parametrize('pad', [0, 3])
@pytest.mark.parametrize('encoding,make', [
    ('rgb8', lambda rgb: rgb),
    ('bgr8', lambda rgb: rgb[:, :, ::-1]),
    ('rgba8', lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])),
    ('bgra8', lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)])),
])
def test_colour_encodings_with_and_without_padding(encoding, make, pad):
    """Every colour encoding gives the same RGB pixels, padded rows or not."""
    msg = _image(np.ascontiguousarray(make(RGB)), encoding, pad)
    out = image_to_rgb(msg)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize('pad', [0, 2])
def test_mono8_is_replicated_to_three_channels(pad):
    """A grey image becomes three equal channels."""
    gray = RGB[:, :, 0:1]
    out = image_to_rgb(_image(np.ascontiguousarray(gray), 'mono8', pad))
    assert out.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray[:, :, 0])


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 4])
def test_mono16_is_scaled_to_8_bit_in_either_byte_order(bigendian, pad):
    """16-bit grey is divided by 256, honouring is_bigendian."""
    values = np.array([[0, 255, 256, 1000], [32768, 65535, 512, 40000]], dtype=np.uint16)
    out = image_to_rgb(_image(values[:, :, None], 'mono16', pad, bigendian))
    expected = (values >> 8).astype(np.uint8)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[:, :, 1], expected)
    assert out[1, 1, 0] == 255 and out[0, 2, 2] == 1


def test_result_is_a_copy_that_does_not_share_the_message_buffer():
    """Writing into the result leaves the message intact."""
    msg = rgb_to_image(RGB)
    out = image_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_round_trip_through_rgb_to_image_keeps_header():
    """rgb_to_image builds a well-formed rgb8 message."""
    msg = rgb_to_image(RGB)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ('rgb8', 21, 5, 7)
    np.testing.assert_array_equal(msg_to_rgb(msg), RGB)


@pytest.mark.parametrize('change,words', [
    ({'encoding': 'yuv422'}, 'unsupported image encoding'),
    ({'height': 0}, 'empty'),
    ({'width': 0}, 'empty'),
    ({'step': 20}, 'step 20 is smaller'),
])
def test_malformed_headers_are_refused_with_advice(change, words):
    """Unknown encodings, empty images and short steps raise ImageError."""
    msg = rgb_to_image(RGB)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=words):
        image_to_rgb(msg)


@pytest.mark.parametrize('delta', [-1, 1, -21])
def test_data_shorter_or_longer_than_step_times_height_is_refused(delta):
    """Data must be exactly step x height bytes."""
    msg = rgb_to_image(RGB)
    data = bytes(msg.data)
    msg.data = data[:delta] if delta < 0 else data + b'\0' * delta
    with pytest.raises(ImageError, match='step x height'):
        image_to_rgb(msg)


def test_oversize_image_is_refused_only_above_the_limit():
    """max_pixels refuses larger images and accepts the limit itself."""
    msg = rgb_to_image(RGB)
    assert image_to_rgb(msg, max_pixels=35).shape == (5, 7, 3)
    with pytest.raises(ImageError, match='max_image_pixels'):
        image_to_rgb(msg, max_pixels=34)


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_compressed_images_decode_to_rgb(ext):
    """PNG decodes exactly and JPEG closely, in RGB order."""
    ok, buf = cv2.imencode(ext, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=ext[1:])
    msg.data = buf.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    if ext == '.png':
        np.testing.assert_array_equal(out, RGB)
    else:
        assert np.abs(out.astype(int) - RGB.astype(int)).mean() < 60
    with pytest.raises(ImageError, match='max_image_pixels'):
        msg_to_rgb(msg, max_pixels=10)


def test_compressed_grey_png_becomes_three_channels():
    """A one-channel PNG decodes to three channels."""
    ok, buf = cv2.imencode('.png', RGB[:, :, 0])
    msg = CompressedImage(format='png')
    msg.data = buf.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out[:, :, 2], RGB[:, :, 0])


@pytest.mark.parametrize('data', [b'', b'not an image at all'])
def test_undecodable_compressed_data_is_refused(data):
    """Empty or garbage compressed data raises ImageError."""
    msg = CompressedImage(format='jpeg')
    msg.data = data
    with pytest.raises(ImageError):
        compressed_to_rgb(msg)


def test_other_types_are_refused():
    """Only image messages and (H, W, 3) uint8 arrays are accepted."""
    with pytest.raises(ImageError, match='sensor_msgs/Image'):
        msg_to_rgb('an image')
    with pytest.raises(ImageError):
        rgb_to_image(np.zeros((2, 2), np.uint8))


def _encoded(ext: str, rgb: np.ndarray = RGB) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def bomb_jpeg(height: int = 20000, width: int = 20000) -> bytes:
    """Return a small real JPEG whose frame header claims `height` x `width` pixels."""
    data = bytearray(_encoded('.jpg', np.zeros((8, 8, 3), np.uint8)))
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


@pytest.mark.parametrize('ext, kind', [('.png', 'png'), ('.jpg', 'jpeg')])
def test_compressed_size_is_read_from_the_header(ext, kind):
    """JPEG and PNG headers give format, height and width without decoding."""
    assert compressed_size(_encoded(ext)) == (kind, 5, 7)
    progressive = cv2.imencode('.jpg', RGB, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert compressed_size(progressive) == ('jpeg', 5, 7)


def test_decompression_bomb_is_refused_before_decoding():
    """A 20000x20000 JPEG header is refused from its header: nothing is decoded."""
    msg = CompressedImage(format='jpeg')
    msg.data = bomb_jpeg()
    assert len(msg.data) < 1000
    with pytest.raises(ImageError, match='20000x20000 = 400000000 pixels'):
        check_msg(msg, max_pixels=8_294_400)
    with pytest.raises(ImageError, match='max_image_pixels'):
        compressed_to_rgb(msg, max_pixels=8_294_400)


@pytest.mark.parametrize('data, words', [
    (cv2.imencode('.bmp', RGB)[1].tobytes(), 'neither JPEG nor PNG'),
    (b'\xff\xd8\xff\xd9', 'no frame header'),
    (b'\x89PNG\r\n\x1a\n', 'no IHDR'),
])
def test_other_or_truncated_formats_are_refused_with_the_accepted_ones(data, words):
    """BMP (decodable by OpenCV, but not named in the README) and truncated headers fail."""
    msg = CompressedImage(format='bmp')
    msg.data = data
    with pytest.raises(ImageError, match=words):
        compressed_to_rgb(msg)


def test_elongated_images_are_refused_above_max_aspect_ratio():
    """A 1x65536 image costs gigabytes in the processor: refused by its ratio, cheaply."""
    thin = Image(height=1, width=65536, encoding='rgb8', step=3 * 65536)
    with pytest.raises(ImageError, match='aspect ratio of 65536.0, more than max_aspect_ratio'):
        check_msg(thin, max_pixels=8_294_400, max_aspect_ratio=10.0)
    check_msg(thin, max_pixels=8_294_400, max_aspect_ratio=0.0)  # 0: no limit
    wide = rgb_to_image(np.zeros((10, 100, 3), np.uint8))
    assert image_to_rgb(wide, max_aspect_ratio=10.0).shape == (10, 100, 3)
    with pytest.raises(ImageError, match='max_aspect_ratio'):
        image_to_rgb(wide, max_aspect_ratio=9.9)
    msg = CompressedImage(format='png')
    msg.data = _encoded('.png', np.zeros((2, 40, 3), np.uint8))
    with pytest.raises(ImageError, match='max_aspect_ratio'):
        msg_to_rgb(msg, max_aspect_ratio=10.0)
