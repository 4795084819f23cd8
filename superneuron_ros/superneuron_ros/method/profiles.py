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
Profiles: the calibrated Super Neurons of one task for one model, as safetensors and JSON.

A profile is a directory ``<name>/`` holding

- ``neurons.safetensors``: the k selected scalars, in profile order: ``layer`` int32 [k],
  ``site`` int8 [k] (0 residual, 1 mlp), ``index`` int64 [k], ``threshold`` float32 [k],
  ``polarity`` int8 [k], ``means`` float32 [k, C] and ``weight`` float32 [k];
- ``profile.json``: everything else (format version, task, prompt, exit layer, classifier kind,
  model fingerprint, metrics, creation time, tool version), indented.

No pickle: both files are plain data. Every problem found while loading raises ProfileError
saying what to do.
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any, Mapping, Sequence
import uuid

import numpy as np
from safetensors.numpy import load_file, save_file
from superneuron_ros import __version__
from superneuron_ros.errors import DataError, ProfileError, ProfileMismatchError
from superneuron_ros.method.probing import Neuron, SITES
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.fingerprint import ModelFingerprint

FORMAT_VERSION = 1
NEURONS_FILE = 'neurons.safetensors'
METADATA_FILE = 'profile.json'
KINDS = ('stump', 'means')
ARRAY_DTYPES = {
    'layer': np.int32, 'site': np.int8, 'index': np.int64, 'threshold': np.float32,
    'polarity': np.int8, 'means': np.float32, 'weight': np.float32}
_RECALIBRATE = 'recalibrate with `superneuron calibrate`'


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# ----------------------------------------------------------------------------- profile


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def _jsonable(value: Any, where: str = 'metrics') -> Any:
    """Return value as plain JSON data: numpy scalars and arrays unpacked, NaN and inf as None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ProfileError(f'{where} keys must be strings, got {list(value)}')
        return {key: _jsonable(item, f'{where}.{key}') for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f'{where}[{i}]') for i, item in enumerate(value)]
    raise ProfileError(f'{where} holds a {type(value).__name__}, which JSON cannot store; use '
                       'numbers, strings, lists and dicts')


def _array(name: str, value: Any) -> np.ndarray:
    """Return value as a read-only array of the dtype profiles store for ``name``."""
    arr = np.asarray(value)
    dtype = np.dtype(ARRAY_DTYPES[name])
    if dtype.kind == 'i' and arr.size and arr.dtype.kind not in 'iu':
        raise ProfileError(f'neuron array {name} must hold integers, got {arr.dtype}')
    if dtype.kind == 'f' and arr.size and arr.dtype.kind not in 'iuf':
        raise ProfileError(f'neuron array {name} must hold numbers, got {arr.dtype}')
    arr = np.array(arr, dtype=dtype)  # a private copy
    arr.setflags(write=False)
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Profile:
    """
    The calibrated Super Neurons of one task for one model; arrays are in profile order.

    ``kind`` 'stump' (binary tasks) uses threshold and polarity; 'means' uses the class means.
    ``means`` is [k, C] for both kinds (a stump profile may hold NaN where means are unknown).
    Arrays are stored read-only; use `dataclasses.replace` to derive a changed profile.
    """

    task: TaskSpec
    prompt: str
    exit_layer: int
    kind: str
    layer: np.ndarray  # [k] int32
    site: np.ndarray  # [k] int8, index into SITES
    index: np.ndarray  # [k] int64
    threshold: np.ndarray  # [k] float32
    polarity: np.ndarray  # [k] int8, +1 or -1
    means: np.ndarray  # [k, C] float32
    weight: np.ndarray  # [k] float32
    fingerprint: ModelFingerprint
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=_now)
    tool_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """Coerce the arrays and check that everything is consistent; raise ProfileError."""
        if not isinstance(self.task, TaskSpec):
            raise ProfileError(f'task must be a TaskSpec, got {type(self.task).__name__}')
        if not isinstance(self.fingerprint, ModelFingerprint):
            raise ProfileError('fingerprint must be a ModelFingerprint')
        if self.format_version != FORMAT_VERSION:
            raise ProfileError(f'unknown profile format version {self.format_version!r}; this '
                               f'superneuron_ros reads version {FORMAT_VERSION}: upgrade it, or '
                               f'{_RECALIBRATE}')
        for name in ('prompt', 'created', 'tool_version'):
            if not isinstance(getattr(self, name), str):
                raise ProfileError(f'{name} must be a string')
        if self.kind not in KINDS:
            raise ProfileError(f'classifier kind must be one of {KINDS}, got {self.kind!r}')
        for name in ARRAY_DTYPES:
            object.__setattr__(self, name, _array(name, getattr(self, name)))
        object.__setattr__(self, 'metrics', _jsonable(dict(self.metrics or {})))
        self._check_arrays()
        self._check_neurons()

    def _check_arrays(self) -> None:
        k = self.layer.shape[0] if self.layer.ndim == 1 else -1
        shapes = {name: getattr(self, name).shape for name in ARRAY_DTYPES}
        num_labels = len(self.task.labels)
        if k < 1 or shapes['means'][:1] != (k,) or len(shapes['means']) != 2 or any(
                shape != (k,) for name, shape in shapes.items() if name != 'means'):
            raise ProfileError(f'neuron arrays have inconsistent shapes {shapes}; expected k >= 1 '
                               f'neurons in each (means [k, {num_labels}]): {_RECALIBRATE}')
        if shapes['means'][1] != num_labels:
            raise ProfileError(
                f'means has {shapes["means"][1]} columns but task {self.task.name!r} has '
                f'{num_labels} labels {list(self.task.labels)}; the profile and its task '
                f'disagree: {_RECALIBRATE}')
        if self.kind == 'stump':
            if num_labels != 2:
                raise ProfileError(f'a stump profile needs exactly 2 labels; task '
                                   f'{self.task.name!r} has {num_labels}')
            if not np.isin(self.polarity, (-1, 1)).all():
                raise ProfileError('stump polarities must be +1 or -1')
            if np.isnan(self.threshold).any():
                raise ProfileError('stump thresholds must not be NaN')
        elif not np.isfinite(self.means).all():
            raise ProfileError('class means must be finite for a means profile')
        if not np.isfinite(self.weight).all() or (self.weight < 0).any() \
                or float(self.weight.sum()) <= 0:
            raise ProfileError('neuron weights must be finite, non-negative and not all zero')

    def _check_neurons(self) -> None:
        fp = self.fingerprint
        if not _is_int(self.exit_layer) or not 0 <= self.exit_layer < fp.num_layers:
            raise ProfileError(f'exit_layer must be an integer in 0..{fp.num_layers - 1} (the '
                               f'model has {fp.num_layers} decoder layers), got '
                               f'{self.exit_layer!r}')
        object.__setattr__(self, 'exit_layer', int(self.exit_layer))
        if (self.layer < 0).any() or (self.layer > self.exit_layer).any():
            raise ProfileError(f'neuron layers {sorted(set(self.layer.tolist()))} must lie in '
                               f'0..exit_layer ({self.exit_layer}): the truncated model would '
                               f'not compute them; {_RECALIBRATE}')
        if not np.isin(self.site, range(len(SITES))).all():
            raise ProfileError(f'neuron sites must be codes 0..{len(SITES) - 1} ({SITES})')
        sizes = np.where(self.site == 0, fp.hidden_size, fp.intermediate_size)
        if (self.index < 0).any() or (self.index >= sizes).any():
            raise ProfileError(f'neuron indices must lie below the site size (hidden '
                               f'{fp.hidden_size}, intermediate {fp.intermediate_size})')
        keys = set(zip(self.layer.tolist(), self.site.tolist(), self.index.tolist()))
        if len(keys) != self.layer.shape[0]:
            raise ProfileError('a neuron appears twice in the profile; each (layer, site, index) '
                               'may be listed once')

    # --------------------------------------------------------------------- accessors

    @classmethod
    def from_neurons(cls, neurons: Sequence[Neuron], **fields: Any) -> 'Profile':
        """Build a profile from named neurons ``(layer, site name, index)`` and other fields."""
        try:
            sites = [SITES.index(n.site) for n in neurons]
        except ValueError:
            raise ProfileError(f'neuron sites must be one of {SITES}') from None
        return cls(layer=[n.layer for n in neurons], site=sites,
                   index=[n.index for n in neurons], **fields)

    @property
    def name(self) -> str:
        """Return the task name, which is also the profile's usual folder name."""
        return self.task.name

    @property
    def neurons(self) -> list[Neuron]:
        """Return the selected scalars as (layer, site name, index), in profile order."""
        return [Neuron(int(la), SITES[int(si)], int(ix))
                for la, si, ix in zip(self.layer, self.site, self.index)]

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the neuron arrays by name (read-only)."""
        return {name: getattr(self, name) for name in ARRAY_DTYPES}

    def metadata(self) -> dict[str, Any]:
        """Return everything but the arrays as the JSON mapping stored in profile.json."""
        return {
            'format_version': self.format_version, 'task': self.task.to_dict(),
            'prompt': self.prompt, 'exit_layer': self.exit_layer, 'kind': self.kind,
            'num_neurons': int(self.layer.shape[0]), 'fingerprint': self.fingerprint.to_dict(),
            'metrics': self.metrics, 'created': self.created, 'tool_version': self.tool_version}

    def __eq__(self, other: object) -> bool:
        """Return whether metadata and arrays are equal (NaN equal to NaN)."""
        if not isinstance(other, Profile):
            return NotImplemented
        return self.metadata() == other.metadata() and all(
            np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
            for n in ARRAY_DTYPES)

    __hash__ = None  # mutable-looking arrays: not hashable

    def check_compatible(self, fingerprint: ModelFingerprint) -> None:
        """
        Raise ProfileMismatchError naming every field where the loaded model differs.

        ``fingerprint`` must be computed at this profile's ``fingerprint.hash_layer``.
        """
        diffs = self.fingerprint.differences(fingerprint)
        if diffs:
            raise ProfileMismatchError(
                f'profile {self.name!r} was calibrated on {self.fingerprint.describe()}; the '
                f'loaded model is {fingerprint.describe()} (differs in {"; ".join(diffs)}); '
                f'{_RECALIBRATE} for this model, or load the model it was made for')

    # --------------------------------------------------------------------- files

    def save(self, directory: 'str | os.PathLike', overwrite: bool = False) -> Path:
        """
        Write the profile folder atomically (temporary folder, then rename); return its path.

        An existing folder is replaced only with ``overwrite`` and only if it holds a profile.
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
            save_file({name: np.ascontiguousarray(a) for name, a in self.arrays().items()},
                      str(tmp / NEURONS_FILE), metadata={'format': 'superneuron_ros.profile'})
            meta = self.metadata()
            meta['neurons_sha256'] = hashlib.sha256((tmp / NEURONS_FILE).read_bytes()).hexdigest()
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + '\n', encoding='utf-8')
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

    @classmethod
    def load(cls, directory: 'str | os.PathLike') -> 'Profile':
        """Read a profile folder; raise ProfileError saying what is wrong and what to do."""
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
        if not _is_int(version) or version != FORMAT_VERSION:
            raise ProfileError(f'profile {path} has format version {version!r}; this '
                               f'superneuron_ros reads version {FORMAT_VERSION}: upgrade it, or '
                               f'{_RECALIBRATE}')
        arrays = _read_arrays(path / NEURONS_FILE, meta.get('neurons_sha256'))
        required = ('task', 'prompt', 'exit_layer', 'kind', 'fingerprint', 'metrics',
                    'created', 'tool_version')
        missing = [key for key in required if key not in meta]
        if missing:
            raise ProfileError(f'profile {path}: profile.json lacks {missing}; {_RECALIBRATE}')
        try:
            task = TaskSpec.from_dict(meta['task'])
            fingerprint = ModelFingerprint.from_dict(meta['fingerprint'])
            if not isinstance(meta['metrics'], Mapping):
                raise ProfileError('metrics must be a mapping')
            return cls(task=task, prompt=meta['prompt'], exit_layer=meta['exit_layer'],
                       kind=meta['kind'], fingerprint=fingerprint, metrics=meta['metrics'],
                       created=meta['created'], tool_version=meta['tool_version'],
                       format_version=version, **arrays)
        except (ProfileError, DataError) as exc:
            raise ProfileError(f'profile {path}: {exc}') from exc


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
    if set(arrays) != set(ARRAY_DTYPES):
        raise ProfileError(f'{path} holds arrays {sorted(arrays)}; expected '
                           f'{sorted(ARRAY_DTYPES)}: {_RECALIBRATE}')
    for name, arr in arrays.items():
        if arr.dtype != np.dtype(ARRAY_DTYPES[name]):
            raise ProfileError(f'{path}: array {name} is {arr.dtype}, expected '
                               f'{np.dtype(ARRAY_DTYPES[name])}: {_RECALIBRATE}')
    return arrays


def is_profile_dir(path: 'str | os.PathLike') -> bool:
    """Return whether path is a folder holding a profile.json."""
    return (Path(path) / METADATA_FILE).is_file()


def find_profiles(paths: Sequence['str | os.PathLike']) -> list[Path]:
    """
    Return the profile folders named by paths, without duplicates, in order.

    Each path is a profile folder, or a folder whose direct subfolders include profiles (taken in
    name order). Anything else raises ProfileError.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_profile_dir(path):
            candidates = [path]
        elif path.is_dir():
            candidates = sorted(p for p in path.iterdir() if is_profile_dir(p))
            if not candidates:
                raise ProfileError(f'{path} is neither a profile folder nor a folder of profile '
                                   'folders (none holds profile.json); pass the folder that '
                                   '`superneuron calibrate` wrote')
        else:
            what = 'is not a folder' if path.exists() else 'does not exist'
            raise ProfileError(f'profile path {path} {what}; pass a profile folder or a folder '
                               'of profile folders')
        for candidate in candidates:
            if candidate.resolve() not in {p.resolve() for p in found}:
                found.append(candidate)
    return found
