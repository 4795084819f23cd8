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
Scene datasets on disk: PNG images, task files and the labelled sets calibration reads.

``superneuron scenes`` writes them; the tests and benchmarks make their data the same way.
"""

import json
import logging
import os
from pathlib import Path
import zlib

import numpy as np
from superneuron_ros.errors import DataError
from superneuron_ros.lab.scenes import get_task, image_hw, render, sample_scene_for, TASKS
from superneuron_ros.method.tasks import write_labelled_set
from superneuron_ros.node.recording import png_bytes

_LOGGER = logging.getLogger(__name__)


def write_dataset(out_dir: str | os.PathLike, n: int, seed: int,
                  size: int | tuple[int, int] = 96,
                  tasks: list[str] | tuple[str, ...] | None = None,
                  varied: bool = False) -> dict:
    """
    Write task files, labelled sets and images for scene tasks; return the manifest.

    Writes ``images/<task>_<i>.png``, ``tasks/<task>.yaml``, ``<task>.jsonl`` (n examples per task,
    labels balanced to within one) and ``manifest.json``. Each task draws from its own generator
    seeded by (seed, task name), so a task's files do not depend on which other tasks are written,
    and the same arguments always give byte-identical files. `varied` draws varied scenes
    (coloured backgrounds, brightness, more noise; see random_scene).
    """
    names = list(TASKS) if tasks is None else list(tasks)
    if not names:
        raise DataError('no tasks to write; name at least one of ' + ', '.join(TASKS))
    for name in names:
        get_task(name)
    if int(n) < 2:
        raise DataError(f'n={n} must be at least 2 so that every set holds two labels')
    if int(seed) < 0:
        raise DataError(f'seed={seed} must be a non-negative integer')
    height, width = image_hw(size)
    out = Path(out_dir)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    manifest: dict = {
        'generator': 'superneuron_ros.lab.scenes', 'format_version': 1,
        'about': 'Generated shape scenes. tasks/<task>.yaml: the task (question, labels); '
                 '<task>.jsonl: one record per image (image path relative to this folder, '
                 'task, answer). Regenerate with: superneuron scenes --out DIR '
                 f'--n {int(n)} --seed {int(seed)} --size {height}x{width}'
                 + ('' if tasks is None else ' --tasks ' + ','.join(names))
                 + (' --varied' if varied else ''),
        'seed': int(seed), 'n': int(n), 'size': [height, width], 'varied': bool(varied),
        'tasks': {}}
    for name in dict.fromkeys(names):
        spec = TASKS[name]
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode('utf-8'))])
        labels = [spec.labels[i % len(spec.labels)] for i in range(int(n))]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        records = []
        for i, label in enumerate(labels):
            scene = sample_scene_for(name, label, rng, varied=varied)
            image_name = f'images/{name}_{i:06d}.png'
            (out / image_name).write_bytes(png_bytes(render(scene, (height, width))))
            records.append({'image': image_name, 'task': name, 'answer': label})
        spec.to_yaml(out / 'tasks' / f'{name}.yaml')
        write_labelled_set(out / f'{name}.jsonl', records)
        counts = {label: labels.count(label) for label in spec.labels}
        manifest['tasks'][name] = {
            'question': spec.question, 'labels': list(spec.labels),
            'task_file': f'tasks/{name}.yaml', 'labelled_set': f'{name}.jsonl',
            'counts': counts}
        _LOGGER.info('wrote %d scenes for %s: %s', len(records), name, counts)
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=2) + '\n', encoding='utf-8')
    return manifest
