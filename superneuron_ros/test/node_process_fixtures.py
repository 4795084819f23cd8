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
Shared by the node's process tests: a tiny calibrated model, the core for reference, a client.

Used as ``pytest_plugins = ['node_process_fixtures']``; the assets are built once per session.
"""

import shutil

import cv2
from node_helpers import RosClient
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from superneuron_ros.lab import scenes
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.method.calibrate import calibrate, CalibrationOptions
from superneuron_ros.method.tasks import load_labelled_set
from superneuron_ros.node.image_conversion import rgb_to_image
from superneuron_ros.runtime.facade import Runtime
from superneuron_ros.vlm.loading import LoadConfig

TASKS = ('red_present', 'shape_count')
OPTIONS = CalibrationOptions(k=5, sizes=(4, 8), folds=3, repeats=1, rank_folds=3, baseline=False,
                             progress=False, quantization='nf4', device='cpu')


@pytest.fixture(scope='session')
def assets(tmp_path_factory):
    """Build two tiny models, calibrate profiles on both, and make a corrupt copy of one."""
    root = tmp_path_factory.mktemp('node_assets')
    model = build_model_folder(root / 'model', 'llava', seed=0)
    other = build_model_folder(root / 'other_model', 'llava', seed=1)
    write_dataset(root / 'data', n=24, seed=0, size=64, tasks=list(TASKS))
    for folder, tasks, out in ((model, TASKS, 'profiles'), (other, TASKS[:1], 'other')):
        for name in tasks:
            examples = load_labelled_set(root / 'data' / f'{name}.jsonl', scenes.TASKS[name])
            result = calibrate(folder, scenes.TASKS[name], examples, OPTIONS)
            result.profile.save(root / out / name)
    shutil.copytree(root / 'profiles' / 'red_present', root / 'corrupt' / 'red_present')
    (root / 'corrupt' / 'red_present' / 'neurons.safetensors').write_bytes(b'\0garbage' * 9)
    return {'root': root, 'model': model, 'profiles': root / 'profiles',
            'other': root / 'other', 'corrupt': root / 'corrupt'}


@pytest.fixture(scope='session')
def reference(assets):
    """Load the core Runtime on the same model and profiles in this process, for comparison."""
    runtime = Runtime.load(LoadConfig(str(assets['model']), 'nf4', 'cpu'), [assets['profiles']])
    yield runtime
    runtime.close()


@pytest.fixture
def client():
    """Yield a test client with a context of this test's own, spun by a daemon thread."""
    ros = RosClient('sn_process_client')
    try:
        yield ros
    finally:
        ros.close()


def scene_image(seed: int, size: int = 64) -> np.ndarray:
    """Render a random scene of `size` x `size` pixels."""
    return scenes.render(scenes.random_scene(np.random.default_rng(seed)), (size, size))


def image_msg(rgb: np.ndarray, stamp: int, frame_id: str = 'front_optical') -> Image:
    """Return an rgb8 Image of `rgb` stamped `stamp` seconds."""
    header = Header(frame_id=frame_id)
    header.stamp.sec = stamp
    return rgb_to_image(rgb, header)


def png_msg(rgb: np.ndarray, stamp: int) -> CompressedImage:
    """Return a PNG CompressedImage of `rgb` stamped `stamp` seconds."""
    _, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png')
    msg.header.stamp.sec = stamp
    msg.data = png.tobytes()
    return msg
