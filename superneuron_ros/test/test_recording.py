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

"""The dataset writer behind ~/record, without ROS: atomic files, recovery, data_dir rules."""

import json
import logging
import os

import cv2
import numpy as np
import pytest
from superneuron_ros.errors import DataError
from superneuron_ros.method.tasks import load_labelled_set, TaskSpec
from superneuron_ros.node import recording
from superneuron_ros.node.recording import (append_line, DatasetWriter, inside_data_dir,
                                            write_atomic)

IMAGE = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)


def test_records_are_a_labelled_set_calibrate_reads(tmp_path):
    """Two records, then the task file and JSONL load with the calibrate loaders."""
    writer = DatasetWriter(tmp_path)
    task = writer.task('door_open', ['yes', 'no'], 'Is the door open?')
    assert not (tmp_path / 'tasks').exists()  # written with the first record, not before
    path, counts = writer.record(task, 'yes', IMAGE)
    assert counts == {'yes': 1, 'no': 0}
    assert np.array_equal(cv2.imread(str(path))[:, :, ::-1], IMAGE)
    task = DatasetWriter(tmp_path).task('door_open')
    _, counts = DatasetWriter(tmp_path).record(task, 'NO', IMAGE)
    assert counts == {'yes': 1, 'no': 1}
    spec = TaskSpec.from_yaml(tmp_path / 'tasks' / 'door_open.yaml')
    assert [e.label for e in load_labelled_set(tmp_path / 'door_open.jsonl', spec)] == [
        'yes', 'no']


def test_a_bad_label_on_the_first_record_writes_nothing(tmp_path):
    """The label is checked before any file is written."""
    writer = DatasetWriter(tmp_path)
    task = writer.task('door_open', ['yes', 'no'])
    with pytest.raises(DataError, match='not a label'):
        writer.record(task, 'maybe', IMAGE)
    assert list(tmp_path.iterdir()) == []


def test_an_incomplete_last_line_is_refused_not_extended(tmp_path):
    """A JSONL file cut by another writer is reported, and left as it is."""
    path = tmp_path / 'set.jsonl'
    path.write_text('{"image": "a.png", "task": "t", "answer": "yes"}\n{"image": "b.p')
    before = path.read_bytes()
    with pytest.raises(DataError, match='incomplete line'):
        append_line(path, {'image': 'c.png', 'task': 't', 'answer': 'no'})
    assert path.read_bytes() == before
    writer = DatasetWriter(tmp_path)
    path.rename(tmp_path / 't.jsonl')
    (tmp_path / 'tasks').mkdir()
    (tmp_path / 'tasks' / 't.yaml').write_text("name: t\nlabels: ['yes', 'no']\n")
    with pytest.raises(DataError, match=r't.jsonl:2: not a record'):
        writer.record(writer.task('t'), 'yes', IMAGE)


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """An error (or a signal) before the rename leaves the old file whole and no .tmp file."""
    path = tmp_path / 'task.yaml'
    path.write_bytes(b'old')

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(recording.os, 'replace', interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b'new')
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['task.yaml']


def test_temporaries_of_a_killed_writer_are_removed_with_a_warning(tmp_path, caplog):
    """A .tmp file left by a SIGKILL is removed, and the log says so."""
    (tmp_path / 'images').mkdir()
    left = tmp_path / 'images' / '.t_000001.png.123.tmp'
    left.write_bytes(b'half')
    with caplog.at_level(logging.WARNING):
        DatasetWriter(tmp_path)
    assert not left.exists() and 'unfinished write' in caplog.text


def test_dataset_folders_must_resolve_inside_data_dir(tmp_path):
    """Relative, absolute inside, outside, and a symlink pointing out of data_dir."""
    data = tmp_path / 'data'
    assert inside_data_dir(str(data), '', 'datasets/t') == (data / 'datasets' / 't').resolve()
    assert inside_data_dir(str(data), str(data / 'x'), 'd') == (data / 'x').resolve()
    (tmp_path / 'out').mkdir()
    (data / 'link').symlink_to(tmp_path / 'out')
    for folder in ('../out', str(tmp_path / 'out'), 'link/set'):
        with pytest.raises(DataError, match='outside data_dir'):
            inside_data_dir(str(data), folder, 'd')


def test_lines_are_whole_json_objects(tmp_path):
    """append_line writes one JSON object per line, newline-terminated."""
    path = tmp_path / 's.jsonl'
    for i in range(3):
        append_line(path, {'image': f'{i}.png', 'task': 't', 'answer': 'é'})
    text = path.read_text(encoding='utf-8')
    assert text.endswith('\n') and [json.loads(x)['answer'] for x in text.splitlines()] == [
        'é'] * 3
