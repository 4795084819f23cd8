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
Labelled frames recorded by ``~/record``: the datasets under data_dir and their atomic writes.

A dataset folder has the layout ``superneuron scenes`` and ``superneuron import-bag`` write and
``superneuron calibrate`` reads: ``images/<task>_<n>.png``, ``tasks/<task>.yaml`` (the task:
name, labels and, once given, the question) and ``<task>.jsonl`` (one record per image: image
path relative to the folder, task, answer). :class:`DatasetWriter` adds one frame at a time so
that a crash or SIGINT at any moment leaves every file complete: the PNG and the task file are
written to a temporary file, synced and renamed over their name; the JSONL line is appended with
one ``write`` of the whole line and synced, after its PNG exists (a crash in between leaves an
unreferenced PNG, never a line without its image). A file that is not in that state anyway (a
line cut by another writer, temporary files of a killed process) is reported, not skipped.

Nothing here imports ROS: :class:`Recorder` reads the request and fills the response by field
name.
"""

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
from superneuron_ros.errors import DataError, ImageError, SuperneuronError
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.node.image_conversion import msg_to_rgb
import yaml

LOG = logging.getLogger(__name__)
TMP_SUFFIX = '.tmp'


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 RGB image as PNG bytes (ImageError if OpenCV cannot)."""
    ok, buffer = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError('OpenCV could not encode a PNG image')
    return buffer.tobytes()


def labelled_set_path(folder: Path, task: str) -> Path:
    """Return the JSONL labelled set of `task` in a dataset folder."""
    return folder / f'{task}.jsonl'


def task_file_path(folder: Path, task: str) -> Path:
    """Return the task file of `task` in a dataset folder (what calibrate --task reads)."""
    return folder / 'tasks' / f'{task}.yaml'


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that the file is either the old one or the complete new one."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}{TMP_SUFFIX}')
    try:
        with open(tmp, 'wb') as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def append_line(path: Path, record: Mapping[str, Any]) -> None:
    """
    Append one JSON record as one line, with a single write, and sync it.

    Refuses (DataError) to append to a file whose last line is incomplete; a short write (a full
    disk) is cut off again before the error is raised.
    """
    line = (json.dumps(dict(record), ensure_ascii=False) + '\n').encode('utf-8')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, 'rb') as stream:
                stream.seek(size - 1)
                if stream.read(1) != b'\n':
                    raise DataError(f'{path} ends with an incomplete line (no newline after byte '
                                    f'{size}); it was not written by ~/record: remove or finish '
                                    'that line, then record again')
        written = os.write(fd, line)
        if written != len(line):
            os.ftruncate(fd, size)
            raise DataError(f'only {written} of {len(line)} bytes could be appended to {path} '
                            '(disk full?); nothing was recorded')
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        _sync_dir(path.parent)


def data_root(data_dir: str) -> Path:
    """Return data_dir expanded and resolved, creating it if needed."""
    root = Path(data_dir or '~/.local/share/superneuron').expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f'cannot create data_dir {root}: {exc}; set the data_dir parameter to '
                        'a writable folder') from exc
    return root


def inside_data_dir(data_dir: str, folder: str, default: str) -> Path:
    """
    Resolve `folder` (relative to data_dir, or absolute) and check it lies inside data_dir.

    An empty `folder` selects `default` (relative to data_dir). Symlinks are resolved first, so a
    link pointing out of data_dir is refused too (DataError).
    """
    root = data_root(data_dir)
    path = (root / (folder or default)).resolve()
    if path != root and root not in path.parents:
        raise DataError(f'{folder!r} resolves to {path}, outside data_dir {root}; give a folder '
                        'relative to data_dir or inside it')
    return path


def _read_task(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f'cannot read the task file {path}: {exc}; fix or remove it') from exc
    labels = data.get('labels') if isinstance(data, dict) else None
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise DataError(f'task file {path} has no list of string labels; fix or remove it')
    return data


def _task_data(spec: TaskSpec, question: str) -> dict[str, Any]:
    data = spec.to_dict()
    if not question:
        del data['question']  # calibrate asks for it; a later record may give it
    return data


class DatasetWriter:
    """Adds labelled frames of tasks to one dataset folder (one writer at a time per folder)."""

    def __init__(self, folder: Path) -> None:
        """Use `folder` (created on the first record); report temporary files left behind."""
        self.folder = Path(folder)
        self.images = self.folder / 'images'
        self._pending: tuple[TaskSpec, str] | None = None  # task file to write on record
        for where in (self.folder, self.images, self.folder / 'tasks'):
            left = sorted(where.glob(f'.*{TMP_SUFFIX}')) if where.is_dir() else []
            for path in left:
                LOG.warning('removing %s: an unfinished write of a process that was killed '
                            '(the file it was replacing is intact)', path)
                path.unlink(missing_ok=True)

    def task(self, name: str, labels: Sequence[str] = (), question: str = '') -> TaskSpec:
        """
        Return the task `name` of this dataset: the stored one, or a new one from `labels`.

        A new task needs `labels`; for a stored one, `labels` (if given) must equal the stored
        ones and `question` (if given) the stored question. Nothing is written here: the next
        :meth:`record` stores a new task, or the question of a stored task that had none. The
        returned task's question is the task name while no question is known.
        """
        labels, question = [str(v) for v in labels], (question or '').strip()
        path = task_file_path(self.folder, name)
        if not path.exists():
            if not labels:
                raise DataError(f'task {name!r} has no records in {self.folder} yet: give its '
                                'labels (e.g. ["yes", "no"]) with the first record')
            spec = TaskSpec(name, question or name, labels)  # checks name and labels
            self._pending = (spec, question)
            return spec
        stored = _read_task(path)
        if labels and labels != stored['labels']:
            raise DataError(f'labels {labels} differ from the labels {stored["labels"]} stored '
                            f'for task {name!r} in {path}; send the stored labels (or none), '
                            'or record into another dataset')
        known = str(stored.get('question') or '')
        if question and known and question != known:
            raise DataError(f'question {question!r} differs from {known!r} stored for task '
                            f'{name!r} in {path}; send the stored question (or none)')
        spec = TaskSpec(name, question or known or name, stored['labels'])
        self._pending = (spec, question) if question and not known else None
        return spec

    def counts(self, spec: TaskSpec) -> dict[str, int]:
        """Count the records of each label of `spec` (DataError naming a malformed line)."""
        counts = dict.fromkeys(spec.labels, 0)
        path = labelled_set_path(self.folder, spec.name)
        if not path.exists():
            return counts
        with open(path, encoding='utf-8') as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    label = spec.labels[spec.label_index(record['answer'])]
                except (ValueError, KeyError, TypeError, DataError) as exc:
                    raise DataError(f'{path}:{number}: not a record of task {spec.name!r} '
                                    f'({exc}); fix or remove that line') from None
                if record.get('task', spec.name) == spec.name:
                    counts[label] += 1
        return counts

    def record(self, spec: TaskSpec, label: str, image: np.ndarray,
               extra: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, int]]:
        """Store `image` with `label` for `spec`; return the PNG's path and the new counts."""
        label = spec.labels[spec.label_index(label)]
        counts = self.counts(spec)
        data = png_bytes(image)
        self.images.mkdir(parents=True, exist_ok=True)
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == spec:  # a new task, or its question
            path = task_file_path(self.folder, spec.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, yaml.safe_dump(_task_data(*pending), sort_keys=False,
                                              allow_unicode=True).encode('utf-8'))
        number = sum(counts.values())
        while (self.images / f'{spec.name}_{number:06d}.png').exists():
            number += 1  # never overwrite a file: an unreferenced PNG stays as it is
        png = self.images / f'{spec.name}_{number:06d}.png'
        write_atomic(png, data)
        append_line(labelled_set_path(self.folder, spec.name),
                    {'image': f'images/{png.name}', 'task': spec.name, 'answer': label,
                     **(extra or {})})
        counts[label] += 1
        return png, counts


class Recorder:
    """The ~/record service: request -> frame -> dataset; every failure is a clear error."""

    def __init__(self, settings: Callable[[], Any], frame: Callable[[Any], Any],
                 active: Callable[[], bool]) -> None:
        """Read settings with `settings()`, the camera frame for a request with `frame(req)`."""
        self._settings = settings
        self._frame = frame
        self._active = active

    def handle(self, request: Any, response: Any) -> Any:
        """Fill `response` for a Record `request` (see superneuron_interfaces/srv/Record.srv)."""
        try:
            settings = self._settings()
            spec = TaskSpec(request.task, 'check', ['a', 'b'])  # the name names files: check it
            folder = inside_data_dir(settings.data_dir, request.dataset,
                                     f'datasets/{spec.name}')
            if len(request.image.data) > 0:
                msg, source = request.image, 'request'
            elif not self._active():
                raise ImageError('the node is not active, so it holds no camera frames; '
                                 'activate it, or send the image in the request')
            else:
                frame = self._frame(request)
                msg, source = frame.msg, frame.camera
            image = msg_to_rgb(msg, settings.max_image_pixels, settings.max_aspect_ratio)
            writer = DatasetWriter(folder)
            spec = writer.task(request.task, list(request.labels), request.question)
            stamp = msg.header.stamp
            path, counts = writer.record(spec, request.label, image, {
                'stamp_ns': int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                'source': f'record:{source}'})
        except (SuperneuronError, OSError) as exc:
            response.success, response.error = False, str(exc)
            return response
        response.success, response.error = True, ''
        response.labels, response.counts = list(counts), list(counts.values())
        response.path, response.dataset = str(path), str(folder)
        return response
