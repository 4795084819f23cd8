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

- ``neurons.safetensors``: the arrays of every readout ``i`` (one per anytime layer, the last at
  the exit layer) under ``r<i>.<name>``: the neurons read, ``layer`` int32 [m], ``site`` int8
  [m] (0 residual, 1 mlp) and ``index`` int64 [m], and the parameters of the readout's kind
  (:data:`superneuron_ros.method.readouts.PARAMETERS`);
- ``profile.json``: everything else (format version, task, prompt, exit layer, the readouts'
  kinds, temperatures and anytime thresholds, the image size the activations were taken at,
  model fingerprint, metrics, creation time, tool version), indented.

Format 1 (one vote at the exit layer: arrays ``layer site index threshold polarity means weight``
and ``kind`` in profile.json) still loads, as a single readout whose scores are the raw vote
shares. No pickle: both files are plain data. Every problem found while loading raises
ProfileError saying what to do.
"""

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from superneuron_ros import __version__
from superneuron_ros.errors import DataError, ProfileError, ProfileMismatchError
from superneuron_ros.jsonio import jsonable
from superneuron_ros.method.probing import Neuron
from superneuron_ros.method.readouts import CONSTANT_THRESHOLD, Readout
from superneuron_ros.method.tasks import TaskSpec
from superneuron_ros.vlm.capture import SITES
from superneuron_ros.vlm.fingerprint import ModelFingerprint

FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
NEURONS_FILE = 'neurons.safetensors'
METADATA_FILE = 'profile.json'
V1_ARRAYS = {
    'layer': np.int32, 'site': np.int8, 'index': np.int64, 'threshold': np.float32,
    'polarity': np.int8, 'means': np.float32, 'weight': np.float32}
_RECALIBRATE = 'recalibrate with `superneuron calibrate`'


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def vote_readout(layer: int, kind: str, num_labels: int, neuron_layer: Any, site: Any,
                 index: Any, threshold: Any = None, polarity: Any = None, means: Any = None,
                 weight: Any = None, **extra: Any) -> Readout:
    """
    Return a vote readout from the format-1 arrays (stump or means kind).

    A stump threshold of -inf (format 1's constant stump) becomes CONSTANT_THRESHOLD; NaN and
    +inf are refused. ``extra`` holds the vote calibration table, if any.
    """
    k = len(np.asarray(index).reshape(-1))
    params: dict[str, Any] = {
        'means': np.full((k, num_labels), np.nan) if means is None else means,
        'weight': np.ones(k) if weight is None else weight, **extra}
    if kind == 'stump':
        thr = np.asarray(threshold, dtype=np.float64)
        if np.isnan(thr).any() or np.isposinf(thr).any():
            raise ProfileError('stump thresholds must not be NaN or +infinity')
        params['threshold'] = np.where(np.isneginf(thr), CONSTANT_THRESHOLD, thr)
        params['polarity'] = polarity
    return Readout(layer=layer, kind=kind, neuron_layer=neuron_layer, site=site, index=index,
                   params=params, num_labels=num_labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Profile:
    """
    The calibrated readouts of one task for one model, ascending by layer.

    ``readouts[-1]`` answers at ``exit_layer``; earlier ones are the anytime exits. Arrays are
    stored read-only; use `dataclasses.replace` to derive a changed profile. ``image_size``
    (height, width) is the resolution the activations were taken at, when the model's
    preprocessing has a setting for it: the square bound ``--vision-side`` set
    (:mod:`superneuron_ros.vlm.vision_side`); None: the processor's default.
    """

    task: TaskSpec
    prompt: str
    exit_layer: int
    readouts: tuple[Readout, ...]
    fingerprint: ModelFingerprint
    image_size: tuple[int, int] | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=_now)
    tool_version: str = __version__
    format_version: int = FORMAT_VERSION  # the version it was read from; saved as the current

    def __post_init__(self) -> None:
        """Check that everything is consistent; raise ProfileError."""
        if not isinstance(self.task, TaskSpec):
            raise ProfileError(f'task must be a TaskSpec, got {type(self.task).__name__}')
        if not isinstance(self.fingerprint, ModelFingerprint):
            raise ProfileError('fingerprint must be a ModelFingerprint')
        if self.format_version not in READ_VERSIONS:
            raise ProfileError(f'unknown profile format version {self.format_version!r}; this '
                               f'superneuron_ros reads versions {READ_VERSIONS}: upgrade it, or '
                               f'{_RECALIBRATE}')
        for name in ('prompt', 'created', 'tool_version'):
            if not isinstance(getattr(self, name), str):
                raise ProfileError(f'{name} must be a string')
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
                raise ProfileError(f'image_size must be (height, width) > 0, got {size!r}')
            object.__setattr__(self, 'image_size', (int(size[0]), int(size[1])))
        try:
            metrics = jsonable(dict(self.metrics or {}), True, 'metrics')
        except DataError as exc:
            raise ProfileError(str(exc)) from None
        object.__setattr__(self, 'metrics', metrics)
        self._check_readouts()

    def _check_readouts(self) -> None:
        readouts = tuple(self.readouts or ())
        if not readouts or not all(isinstance(r, Readout) for r in readouts):
            raise ProfileError(f'a profile needs at least one Readout: {_RECALIBRATE}')
        object.__setattr__(self, 'readouts', readouts)
        fp = self.fingerprint
        if not _is_int(self.exit_layer) or not 0 <= self.exit_layer < fp.num_layers:
            raise ProfileError(f'exit_layer must be an integer in 0..{fp.num_layers - 1} (the '
                               f'model has {fp.num_layers} decoder layers), got '
                               f'{self.exit_layer!r}')
        object.__setattr__(self, 'exit_layer', int(self.exit_layer))
        layers = [r.layer for r in readouts]
        if layers != sorted(set(layers)) or layers[-1] != self.exit_layer:
            raise ProfileError(f'readout layers {layers} must be distinct, ascending and end at '
                               f'the exit layer {self.exit_layer}; {_RECALIBRATE}')
        num_labels = len(self.task.labels)
        for r in readouts:
            if r.num_labels != num_labels:
                raise ProfileError(f'the readout at layer {r.layer} answers {r.num_labels} '
                                   f'labels but task {self.task.name!r} has {num_labels} '
                                   f'{list(self.task.labels)}: {_RECALIBRATE}')
            if not np.isin(r.site, range(len(SITES))).all():
                raise ProfileError(f'neuron sites must be codes 0..{len(SITES) - 1} ({SITES})')
            sizes = np.where(r.site == 0, fp.hidden_size, fp.intermediate_size)
            if (r.index < 0).any() or (r.index >= sizes).any():
                raise ProfileError(f'neuron indices must lie below the site size (hidden '
                                   f'{fp.hidden_size}, intermediate {fp.intermediate_size})')

    # --------------------------------------------------------------------- accessors

    @classmethod
    def from_vote(cls, *, task: TaskSpec, exit_layer: int, kind: str, layer: Any, site: Any,
                  index: Any, threshold: Any = None, polarity: Any = None, means: Any = None,
                  weight: Any = None, **fields: Any) -> 'Profile':
        """Build a single-exit vote profile from format-1 style arrays and other fields."""
        if kind not in ('stump', 'means'):
            raise ProfileError(f"a vote profile's kind must be 'stump' or 'means', got {kind!r}")
        if not _is_int(exit_layer):
            raise ProfileError(f'exit_layer must be an integer, got {exit_layer!r}')
        try:
            readout = vote_readout(exit_layer, kind, len(task.labels), layer, site, index,
                                   threshold, polarity, means, weight)
        except ProfileError as exc:
            raise ProfileError(f'{exc}; {_RECALIBRATE}') from None
        return cls(task=task, exit_layer=exit_layer, readouts=(readout,), **fields)

    @classmethod
    def from_neurons(cls, neurons: Sequence[Any], **fields: Any) -> 'Profile':
        """Build a vote profile from named neurons ``(layer, site name, index)`` and arrays."""
        try:
            sites = [SITES.index(n.site) for n in neurons]
        except ValueError:
            raise ProfileError(f'neuron sites must be one of {SITES}') from None
        return cls.from_vote(layer=[n.layer for n in neurons], site=sites,
                             index=[n.index for n in neurons], **fields)

    @property
    def name(self) -> str:
        """Return the task name, which is also the profile's usual folder name."""
        return self.task.name

    @property
    def exit_readout(self) -> Readout:
        """Return the readout at the exit layer."""
        return self.readouts[-1]

    @property
    def kind(self) -> str:
        """Return the kind of the exit readout ('stump', 'means' or 'linear')."""
        return self.exit_readout.kind

    @property
    def num_neurons(self) -> int:
        """Return the number of scalars the exit readout reads."""
        return self.exit_readout.num_neurons

    @property
    def neurons(self) -> list[Neuron]:
        """Return the exit readout's scalars as (layer, site name, index), in readout order."""
        r = self.exit_readout
        return [Neuron(int(la), SITES[int(si)], int(ix))
                for la, si, ix in zip(r.neuron_layer, r.site, r.index)]

    def __getattr__(self, name: str) -> Any:
        """Return the exit readout's neuron arrays and parameters (format-1 names)."""
        readouts = self.__dict__.get('readouts')
        if readouts and name in ('layer', 'site', 'index'):
            return getattr(readouts[-1], 'neuron_layer' if name == 'layer' else name)
        if readouts and name in readouts[-1].params:
            return readouts[-1].params[name]
        raise AttributeError(f'{type(self).__name__!r} object has no attribute {name!r}')

    def metadata(self) -> dict[str, Any]:
        """Return everything but the arrays as the JSON mapping stored in profile.json."""
        return {
            'format_version': FORMAT_VERSION, 'task': self.task.to_dict(),
            'prompt': self.prompt, 'exit_layer': self.exit_layer, 'kind': self.kind,
            'num_neurons': self.num_neurons,
            'image_size': None if self.image_size is None else list(self.image_size),
            'readouts': [{'layer': r.layer, 'kind': r.kind, 'num_neurons': r.num_neurons,
                          'temperature': r.temperature, 'min_confidence': r.min_confidence}
                         for r in self.readouts],
            'fingerprint': self.fingerprint.to_dict(), 'metrics': self.metrics,
            'created': self.created, 'tool_version': self.tool_version}

    def arrays(self) -> dict[str, np.ndarray]:
        """Return every readout's arrays under ``r<i>.<name>`` (read-only)."""
        out = {}
        for i, r in enumerate(self.readouts):
            out[f'r{i}.layer'] = r.neuron_layer
            out[f'r{i}.site'] = r.site
            out[f'r{i}.index'] = r.index
            out.update({f'r{i}.{name}': arr for name, arr in r.params.items()})
        return out

    def __eq__(self, other: object) -> bool:
        """Return whether metadata and arrays are equal (NaN equal to NaN)."""
        if not isinstance(other, Profile):
            return NotImplemented
        mine, theirs = self.arrays(), other.arrays()
        return self.metadata() == other.metadata() and set(mine) == set(theirs) and all(
            np.array_equal(mine[n], theirs[n], equal_nan=True) for n in mine)

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

    def check_image_size(self, image_size: tuple[int, int] | None) -> None:
        """Raise ProfileMismatchError when the model preprocesses at another resolution."""
        mine = self.image_size
        theirs = None if image_size is None else tuple(int(v) for v in image_size)
        if mine != theirs:
            raise ProfileMismatchError(
                f'profile {self.name!r} was calibrated on images preprocessed at '
                f'{_size(mine)}; the model is set to {_size(theirs)}: load it with the profiles '
                f'of one resolution (the runtime sets the size they record), or {_RECALIBRATE} '
                f'--vision-side N at the size you want')

    # --------------------------------------------------------------------- files

    def save(self, directory: 'str | os.PathLike', overwrite: bool = False,
             extra: 'Callable[[Path], None] | None' = None) -> Path:
        """
        Write the profile folder atomically (temporary folder, then rename); return its path.

        An existing folder is replaced only with ``overwrite`` and only if it holds a profile;
        ``extra(folder)`` adds files before the rename (see ``profile_files.save_profile``).
        """
        from superneuron_ros.method.profile_files import save_profile
        return save_profile(self, directory, overwrite, extra)

    @classmethod
    def load(cls, directory: 'str | os.PathLike') -> 'Profile':
        """Read a profile folder (format 1 or 2); raise ProfileError saying what to do."""
        from superneuron_ros.method.profile_files import load_profile
        return load_profile(directory)


def _size(size: tuple[int, int] | None) -> str:
    return "the processor's default size" if size is None else f'{size[0]}x{size[1]}'


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
