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

"""Profile folders on disk: atomic writes, and reading formats 1 and 2 with clear errors."""

import hashlib
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any, Callable, Mapping
import uuid

import numpy as np
from safetensors.numpy import load_file, save_file
from superneuron_ros.errors import DataError, ProfileError
from superneuron_ros.method.profiles import (_is_int, _RECALIBRATE, METADATA_FILE, NEURONS_FILE,
                                             Profile, READ_VERSIONS, V1_ARRAYS)
from superneuron_ros.method.readouts import NEURON_ARRAYS, Readout
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.fingerprint import ModelFingerprint


def save_profile(profile: Profile, directory: 'str | os.PathLike',
                 overwrite: bool = False,
                 extra: 'Callable[[Path], None] | None' = None) -> Path:
    """
    Write the profile folder atomically (temporary folder, then rename); return its path.

    An existing folder is replaced only with ``overwrite`` and only if it holds a profile.
    ``extra(folder)`` writes more files into the temporary folder before the rename (the
    calibration report), so that they appear with the profile or not at all.
    """
    path = Path(directory)
    if path.exists():
        if not overwrite:
            raise ProfileError(f'{path} already exists; choose another folder or overwrite '
                               'it (--force)')
        if not (path / METADATA_FILE).is_file():
            raise ProfileError(f'{path} exists and is not a profile folder; refusing to '
                               'replace it: choose another folder')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    except OSError as exc:
        raise ProfileError(f'cannot write a profile in {path.parent}: {exc}') from exc
    try:
        os.chmod(tmp, 0o755)
        save_file({name: np.ascontiguousarray(a) for name, a in profile.arrays().items()},
                  str(tmp / NEURONS_FILE), metadata={'format': 'superneuron_ros.profile'})
        meta = profile.metadata()
        meta['neurons_sha256'] = hashlib.sha256((tmp / NEURONS_FILE).read_bytes()).hexdigest()
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + '\n',
                                         encoding='utf-8')
        if extra is not None:
            extra(tmp)
        if path.exists():
            old = path.parent / f'.{path.name}.{uuid.uuid4().hex}.old'
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except OSError as exc:
        raise ProfileError(f'cannot write profile {path}: {exc}') from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_profile(directory: 'str | os.PathLike') -> Profile:
    """Read a profile folder (format 1 or 2); raise ProfileError saying what to do."""
    path = Path(directory)
    if not path.is_dir():
        what = 'is not a folder' if path.exists() else 'does not exist'
        raise ProfileError(f'profile {path} {what}; pass a folder written by '
                           '`superneuron calibrate` (holding profile.json and '
                           'neurons.safetensors)')
    for name in (METADATA_FILE, NEURONS_FILE):
        if not (path / name).is_file():
            raise ProfileError(f'profile {path} lacks {name}; it is incomplete: '
                               f'{_RECALIBRATE}')
    meta = _read_json(path / METADATA_FILE)
    version = meta.get('format_version')
    if not _is_int(version) or version not in READ_VERSIONS:
        raise ProfileError(f'profile {path} has format version {version!r}; this '
                           f'superneuron_ros reads versions {READ_VERSIONS}: upgrade it, or '
                           f'{_RECALIBRATE}')
    arrays = _read_arrays(path / NEURONS_FILE, meta.get('neurons_sha256'))
    required = ('task', 'prompt', 'exit_layer', 'fingerprint', 'metrics', 'created',
                'tool_version') + (('kind',) if version == 1 else ('readouts',))
    missing = [key for key in required if key not in meta]
    if missing:
        raise ProfileError(f'profile {path}: profile.json lacks {missing}; {_RECALIBRATE}')
    try:
        task = TaskSpec.from_dict(meta['task'])
        fields = {
            'task': task, 'prompt': meta['prompt'], 'exit_layer': meta['exit_layer'],
            'fingerprint': ModelFingerprint.from_dict(meta['fingerprint']),
            'metrics': meta['metrics'], 'created': meta['created'],
            'tool_version': meta['tool_version'], 'format_version': version}
        if not isinstance(meta['metrics'], Mapping):
            raise ProfileError('metrics must be a mapping')
        if version == 1:
            _expect(arrays, set(V1_ARRAYS), path)
            return Profile.from_vote(kind=meta['kind'], **fields, **arrays)
        readouts = _readouts(meta['readouts'], arrays, len(task.labels), path)
        return Profile(readouts=readouts, image_size=meta.get('image_size'), **fields)
    except (ProfileError, DataError) as exc:
        raise ProfileError(f'profile {path}: {exc}') from exc


def _expect(arrays: Mapping[str, np.ndarray], names: set[str], path: Path) -> None:
    if set(arrays) != names:
        raise ProfileError(f'{path / NEURONS_FILE} holds arrays {sorted(arrays)}; expected '
                           f'{sorted(names)}: {_RECALIBRATE}')


def _readouts(entries: Any, arrays: Mapping[str, np.ndarray], num_labels: int,
              path: Path) -> tuple[Readout, ...]:
    """Rebuild the readouts of a format-2 profile from profile.json entries and arrays."""
    if not isinstance(entries, list) or not entries:
        raise ProfileError('readouts must be a non-empty list')
    readouts, used = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not {'layer', 'kind'} <= set(entry):
            raise ProfileError(f'readout {i} must be a mapping with layer and kind')
        prefix = f'r{i}.'
        mine = {name[len(prefix):]: arr for name, arr in arrays.items()
                if name.startswith(prefix)}
        used.update(prefix + name for name in mine)
        neurons = {name: mine.pop(name, None) for name in NEURON_ARRAYS}
        if any(arr is None for arr in neurons.values()):
            raise ProfileError(f'readout {i} lacks its neuron arrays in {NEURONS_FILE}')
        for name, arr in neurons.items():
            if arr.dtype != np.dtype(NEURON_ARRAYS[name]):
                raise ProfileError(f'array {prefix}{name} is {arr.dtype}, expected '
                                   f'{np.dtype(NEURON_ARRAYS[name])}')
        readouts.append(Readout(
            layer=entry['layer'], kind=entry['kind'], neuron_layer=neurons['layer'],
            site=neurons['site'], index=neurons['index'], params=mine, num_labels=num_labels,
            temperature=entry.get('temperature', 1.0),
            min_confidence=entry.get('min_confidence', 0.0)))
    if used != set(arrays):
        raise ProfileError(f'{path / NEURONS_FILE} holds arrays of no readout: '
                           f'{sorted(set(arrays) - used)}')
    return tuple(readouts)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f'{path} is not readable JSON ({exc}); the profile is corrupt: '
                           f'{_RECALIBRATE}') from exc
    if not isinstance(meta, dict):
        raise ProfileError(f'{path} must hold a JSON object; the profile is corrupt: '
                           f'{_RECALIBRATE}')
    return meta


def _read_arrays(path: Path, sha256: Any) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f'cannot read {path}: {exc}') from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ProfileError(f'{path} does not match the checksum in profile.json; the profile is '
                           f'corrupt or its files come from different calibrations: '
                           f'{_RECALIBRATE}')
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ProfileError(f'{path} is not a readable safetensors file ({exc}); the profile is '
                           f'corrupt: {_RECALIBRATE}') from exc
    for name, arr in arrays.items():
        want = V1_ARRAYS.get(name)
        if want is not None and arr.dtype != np.dtype(want):
            raise ProfileError(f'{path}: array {name} is {arr.dtype}, expected '
                               f'{np.dtype(want)}: {_RECALIBRATE}')
    return arrays
