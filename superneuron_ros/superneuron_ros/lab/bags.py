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
Labelled sets from ROS 2 bags: frames of an image topic, labels from the same bag or a CSV.

:func:`import_bag` reads a bag (sqlite3 or mcap, any ROS 2 distribution) with the pure-Python
``rosbags`` package, so no ROS install is needed. Each kept frame (sensor_msgs/Image or
CompressedImage) is written as a PNG and gets one JSONL record in the format that
``superneuron calibrate`` reads. A frame's label is either the latest std_msgs/String on a label
topic at the frame's time, or the label of the CSV time range (``start,end,label``, seconds from
the bag's first message) it falls in. Times are the bag's log times (when the recorder received
each message), the one clock that labels without a header share with frames.

The output folder appears whole or not at all: everything is written into a temporary folder
beside it, which is renamed at the end.
"""

import csv
from dataclasses import dataclass, field
import logging
import os
from pathlib import Path
import shutil
import tempfile
from typing import Iterator, Sequence

import numpy as np
from superneuron_ros.errors import DataError, ImageError
from superneuron_ros.method.tasks import TaskSpec, write_labelled_set
from superneuron_ros.node.image_conversion import compressed_to_rgb, image_to_rgb
from superneuron_ros.node.recording import labelled_set_path, png_bytes, task_file_path

LOG = logging.getLogger(__name__)

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
LABEL_TYPE = 'std_msgs/msg/String'
NS = 1_000_000_000


@dataclass(frozen=True)
class LabelRange:
    """Frames whose time since the bag's start lies in [start, end) seconds get `label`."""

    start: float
    end: float
    label: str


@dataclass
class ImportSummary:
    """What an import kept and skipped; `counts` is frames kept per label."""

    out: Path
    labelled_set: Path
    frames_seen: int = 0
    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one frame left out for `reason`."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_label_ranges(path: str | os.PathLike, task: TaskSpec) -> list[LabelRange]:
    """
    Read a CSV of labelled time ranges with the header ``start,end,label``.

    Times are seconds since the bag's first message; ranges must not overlap and every label must
    be one of the task's (matched as in labelled sets: exact, else ignoring case). Raises
    DataError naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f'cannot read label ranges {path}: {exc}') from exc
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or ()]
    if header != ['start', 'end', 'label']:
        raise DataError(f'{path}: the first line must be the header "start,end,label", got '
                        f'{reader.fieldnames}')
    ranges = []
    for number, row in enumerate(reader, start=2):
        where = f'{path}:{number}'
        try:
            start, end = float(row['start']), float(row['end'])
        except (TypeError, ValueError):
            raise DataError(f'{where}: start and end must be numbers of seconds, got '
                            f'{row["start"]!r}, {row["end"]!r}') from None
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
            raise DataError(f'{where}: need 0 <= start < end, got {start} and {end}')
        try:
            label = task.labels[task.label_index((row['label'] or '').strip())]
        except DataError as exc:
            raise DataError(f'{where}: {exc}') from None
        ranges.append(LabelRange(start, end, label))
    if not ranges:
        raise DataError(f'{path} holds no label ranges; add lines "start,end,label"')
    ranges.sort(key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        if b.start < a.end:
            raise DataError(f'{path}: ranges [{a.start}, {a.end}) and [{b.start}, {b.end}) '
                            'overlap; give every moment one label at most')
    return ranges


def _range_label(ranges: Sequence[LabelRange], seconds: float) -> str | None:
    for r in ranges:
        if r.start <= seconds < r.end:
            return r.label
    return None


def _to_rgb(msg: object, msgtype: str) -> np.ndarray:
    if msgtype == IMAGE_TYPES[1]:
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def _frames(bag: Path, topic: str, label_topic: str | None) -> Iterator[tuple]:
    """Yield (log time ns, bag start ns, msgtype, message or label text) in time order."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import ReaderError
    try:
        reader = AnyReader([bag])
        reader.open()
    except (ReaderError, OSError, ValueError) as exc:
        raise DataError(f'cannot open bag {bag}: {exc}; pass a ROS 2 bag folder (metadata.yaml '
                        'with .db3 or .mcap files)') from exc
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
        if topic not in types:
            raise DataError(f'bag {bag} has no topic {topic!r}; its topics: {sorted(types)}')
        if types[topic] not in IMAGE_TYPES:
            raise DataError(f'topic {topic!r} carries {types[topic]}, not one of {IMAGE_TYPES}')
        wanted = [topic]
        if label_topic is not None:
            if label_topic not in types:
                raise DataError(f'bag {bag} has no label topic {label_topic!r}; its topics: '
                                f'{sorted(types)}')
            if types[label_topic] != LABEL_TYPE:
                raise DataError(f'label topic {label_topic!r} carries {types[label_topic]}, not '
                                f'{LABEL_TYPE}')
            wanted.append(label_topic)
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, stamp, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            yield stamp, reader.start_time, connection.topic, connection.msgtype, msg
    finally:
        reader.close()


def import_bag(bag: str | os.PathLike, topic: str, out: str | os.PathLike, task: TaskSpec, *,
               label_topic: str | None = None, ranges: Sequence[LabelRange] | None = None,
               every: float = 0.0, force: bool = False) -> ImportSummary:
    """
    Extract labelled frames of `topic` from `bag` into `out` (PNG images + one JSONL set).

    Exactly one of `label_topic` and `ranges` gives the labels. `every` > 0 keeps at most one
    frame per `every` seconds of bag time. Frames without a label (before the first label
    message, outside every range, or labelled with a word that is not one of the task's) and
    frames that do not decode are skipped and counted. `out` must not exist unless `force`.
    """
    bag, out = Path(bag), Path(out)
    if (label_topic is None) == (ranges is None):
        raise DataError('give the labels either as a label topic or as a CSV of time ranges')
    if every < 0 or not np.isfinite(every):
        raise DataError(f'every must be a number of seconds >= 0, got {every}')
    if out.exists() and not force:
        raise DataError(f'{out} already exists; choose another folder or pass --force')
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
    summary = ImportSummary(out=out, labelled_set=labelled_set_path(out, task.name))
    try:
        (tmp / 'images').mkdir()
        records, current, last_kept = [], None, None
        for stamp, start, where, msgtype, msg in _frames(bag, topic, label_topic):
            if where == label_topic:
                text = msg.data.strip()
                try:
                    current = task.labels[task.label_index(text)]
                except DataError:
                    current = None  # 'none', 'skip' or any other word pauses labelling
                continue
            summary.frames_seen += 1
            seconds = (stamp - start) / NS
            label = current if ranges is None else _range_label(ranges, seconds)
            if label is None:
                summary.skip('no label')
                continue
            if every > 0 and last_kept is not None and (stamp - last_kept) < every * NS:
                summary.skip('every')
                continue
            try:
                image = _to_rgb(msg, msgtype)
            except ImageError as exc:
                LOG.warning('frame at %.3f s skipped: %s', seconds, exc)
                summary.skip('undecodable')
                continue
            name = f'images/{task.name}_{len(records):06d}.png'
            (tmp / name).write_bytes(png_bytes(image))
            records.append({'image': name, 'task': task.name, 'answer': label,
                            'stamp_ns': int(stamp), 'source': f'{bag.name}:{topic}'})
            summary.counts[label] = summary.counts.get(label, 0) + 1
            last_kept = stamp
        summary.kept = len(records)
        if not records:
            raise DataError(f'no labelled frame of {topic!r} in {bag} (seen '
                            f'{summary.frames_seen}, skipped {summary.skipped}); check the label '
                            'topic or ranges and the task labels')
        task.to_yaml(task_file_path(tmp, task.name))
        write_labelled_set(labelled_set_path(tmp, task.name), records)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOG.info('imported %d frame(s) of %s from %s: %s; skipped %s', summary.kept, topic, bag,
             summary.counts, summary.skipped)
    return summary
