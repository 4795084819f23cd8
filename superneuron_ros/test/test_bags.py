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

"""`superneuron import-bag`: bags written here with rosbags itself, sqlite3 and mcap."""

import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from superneuron_ros.cli.main import main
from superneuron_ros.errors import DataError
from superneuron_ros.lab.bags import import_bag, LabelRange, read_label_ranges
from superneuron_ros.method.tasks import load_image, load_labelled_set, TaskSpec

STORE = get_typestore(Stores.ROS2_KILTED)
TASK = TaskSpec(name='door_open', question='Is the door open?', labels=('yes', 'no'))
NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def _frame(i: int) -> np.ndarray:
    """Return a distinct 12x16 RGB frame for index i."""
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def _header(stamp: int):
    types = STORE.types
    time = types['builtin_interfaces/msg/Time'](sec=stamp // NS, nanosec=stamp % NS)
    return types['std_msgs/msg/Header'](stamp=time, frame_id='cam')


def _image_msg(rgb: np.ndarray, stamp: int):
    return STORE.types['sensor_msgs/msg/Image'](
        header=_header(stamp), height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8',
        is_bigendian=0, step=3 * rgb.shape[1], data=rgb.reshape(-1).copy())


def _compressed_msg(rgb: np.ndarray, stamp: int):
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return STORE.types['sensor_msgs/msg/CompressedImage'](
        header=_header(stamp), format='png', data=png.reshape(-1))


def write_bag(path: Path, frames: int, labels: dict[int, str], *, compressed: bool = False,
              storage: StoragePlugin = StoragePlugin.SQLITE3, period: float = 0.1) -> Path:
    """Write `frames` frames on /cam, one per `period` s, and labels[i] before frame i."""
    image_type = 'sensor_msgs/msg/' + ('CompressedImage' if compressed else 'Image')
    string_type = 'std_msgs/msg/String'
    with Writer(path, version=9, storage_plugin=storage) as writer:
        cam = writer.add_connection('/cam', image_type, typestore=STORE)
        lab = writer.add_connection('/label', string_type, typestore=STORE)
        for i in range(frames):
            stamp = T0 + int(i * period * NS)
            if i in labels:
                msg = STORE.types[string_type](data=labels[i])
                writer.write(lab, stamp - 1000, STORE.serialize_cdr(msg, string_type))
            msg = (_compressed_msg if compressed else _image_msg)(_frame(i), stamp)
            writer.write(cam, stamp, STORE.serialize_cdr(msg, image_type))
    return path


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
@pytest.mark.parametrize('compressed', [False, True])
def test_label_topic_import_gives_a_loadable_set_with_exact_frames(tmp_path, storage,
                                                                   compressed):
    """Frames before the first label and under a non-label word are skipped; pixels are exact."""
    bag = write_bag(tmp_path / 'bag', 10, {2: 'yes', 5: 'No', 7: 'unsure', 8: 'yes'},
                    compressed=compressed, storage=storage)
    summary = import_bag(bag, '/cam', tmp_path / 'out', TASK, label_topic='/label')
    assert summary.frames_seen == 10
    assert summary.counts == {'yes': 5, 'no': 2}
    assert summary.skipped == {'no label': 3}  # frames 0, 1 (before any label) and 7 (unsure)
    examples = load_labelled_set(summary.labelled_set, TASK)
    kept = [2, 3, 4, 5, 6, 8, 9]
    assert [ex.label for ex in examples] == ['yes', 'yes', 'yes', 'no', 'no', 'yes', 'yes']
    for example, index in zip(examples, kept):
        np.testing.assert_array_equal(load_image(example.image_path), _frame(index))
    assert TaskSpec.from_yaml(summary.out / 'tasks' / 'door_open.yaml') == TASK


def test_csv_ranges_and_every(tmp_path):
    """CSV ranges (seconds from the bag start) label frames; --every thins them by bag time."""
    bag = write_bag(tmp_path / 'bag', 20, {}, period=0.1)
    csv_path = tmp_path / 'labels.csv'
    csv_path.write_text('start,end,label\n0.15,0.75,yes\n1.0,2.0,NO\n', encoding='utf-8')
    ranges = read_label_ranges(csv_path, TASK)
    assert ranges == [LabelRange(0.15, 0.75, 'yes'), LabelRange(1.0, 2.0, 'no')]
    summary = import_bag(bag, '/cam', tmp_path / 'out', TASK, ranges=ranges, every=0.25)
    # yes: frames 2..7 (0.2..0.7 s), kept 2, 5 (>= 0.25 s apart); no: 10..19 from 1.0 s, kept
    # 10, 13, 16, 19.
    examples = load_labelled_set(summary.labelled_set, TASK)
    assert [ex.label for ex in examples] == ['yes', 'yes', 'no', 'no', 'no', 'no']
    np.testing.assert_array_equal(load_image(examples[1].image_path), _frame(5))
    np.testing.assert_array_equal(load_image(examples[2].image_path), _frame(10))
    assert summary.skipped == {'no label': 4, 'every': 10}  # frames 0, 1, 8, 9 unlabelled


@pytest.mark.parametrize('text, match', [
    ('begin,end,label\n0,1,yes\n', 'header'),
    ('start,end,label\n0,1,maybe\n', 'not a label'),
    ('start,end,label\n1,0.5,yes\n', 'start < end'),
    ('start,end,label\nzero,1,yes\n', 'numbers'),
    ('start,end,label\n0,2,yes\n1,3,no\n', 'overlap'),
    ('start,end,label\n', 'no label ranges'),
])
def test_bad_label_ranges_are_refused_with_the_line(tmp_path, text, match):
    """Malformed CSVs name what is wrong."""
    path = tmp_path / 'labels.csv'
    path.write_text(text, encoding='utf-8')
    with pytest.raises(DataError, match=match):
        read_label_ranges(path, TASK)


def test_bad_requests_leave_nothing_behind(tmp_path):
    """Unknown topics, wrong types, no labelled frame and an existing folder are refused."""
    bag = write_bag(tmp_path / 'bag', 3, {0: 'yes'})
    out = tmp_path / 'out'
    with pytest.raises(DataError, match='no topic'):
        import_bag(bag, '/nope', out, TASK, label_topic='/label')
    with pytest.raises(DataError, match='not one of'):
        import_bag(bag, '/label', out, TASK, label_topic='/label')
    with pytest.raises(DataError, match='no label topic'):
        import_bag(bag, '/cam', out, TASK, label_topic='/nope')
    with pytest.raises(DataError, match='no labelled frame'):
        import_bag(bag, '/cam', out, TASK, ranges=[LabelRange(100.0, 200.0, 'yes')])
    with pytest.raises(DataError, match='cannot open bag'):
        import_bag(tmp_path / 'missing', '/cam', out, TASK, label_topic='/label')
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag']  # no temporary folder left
    out.mkdir()
    with pytest.raises(DataError, match='already exists'):
        import_bag(bag, '/cam', out, TASK, label_topic='/label')
    assert import_bag(bag, '/cam', out, TASK, label_topic='/label', force=True).kept == 3


def test_cli_import_then_calibrate_reads_it(tmp_path, capsys):
    """The command line writes the set; the calibration loader reads it."""
    bag = write_bag(tmp_path / 'bag', 6, {0: 'yes', 3: 'no'}, storage=StoragePlugin.MCAP)
    TASK.to_yaml(tmp_path / 'task.yaml')
    code = main(['import-bag', str(bag), '--topic', '/cam', '--task', str(tmp_path / 'task.yaml'),
                 '--label-topic', '/label', '--out', str(tmp_path / 'set')])
    assert code == 0
    assert '6 of 6 frame(s)' in capsys.readouterr().out
    examples = load_labelled_set(tmp_path / 'set' / 'door_open.jsonl', TASK)
    assert [ex.label for ex in examples] == ['yes'] * 3 + ['no'] * 3
    assert main(['import-bag', str(bag), '--topic', '/cam', '--task', str(tmp_path / 'task.yaml'),
                 '--label-topic', '/label', '--out', str(tmp_path / 'set')]) == 2


def test_import_needs_no_ros_install(tmp_path):
    """The bag reader and the frame decoders import with every ROS package blocked."""
    code = ('import sys\n'
            'for name in ("rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces",'
            ' "superneuron_interfaces"):\n'
            '    sys.modules[name] = None\n'
            'from superneuron_ros.lab.bags import import_bag\n'
            'from superneuron_ros.cli import import_bag as cli\n'
            'print("ok")\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
