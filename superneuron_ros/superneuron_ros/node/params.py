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
The node's parameters: declarations with descriptors, parsing, and validation of changes.

Cameras cannot be a dict in ROS parameters, so they are a list of names plus, per name, a
``<name>.topic`` and a ``<name>.transport`` parameter declared after reading the list (as nav2
does for its plugins). Standing tasks are strings ``TASK@CAMERA`` (every frame) or
``TASK@CAMERA:RATE_HZ``.

A params file whose value has the wrong type never kills the node: an integer where a double is
declared (``max_image_age: 1``) is taken as that double; any other wrong type or an out-of-range
value is replaced by the default and reported, naming the parameter, the expected and the given
type, by :func:`read_settings` (so configure fails and /diagnostics shows it as an ERROR).
"""

from dataclasses import dataclass, replace
import re
from typing import Any, Sequence
import weakref

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter
from superneuron_ros.errors import SuperneuronError
from superneuron_ros.node.compat import parameter_override
from superneuron_ros.vlm.config import LoadConfig

TRANSPORTS = ('raw', 'compressed')
DEFAULT_DATA_DIR = '~/.local/share/superneuron'  # recorded sets and taught profiles
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*\Z')
# Parameters that may change while the node runs; every other one is read-only.
CHANGEABLE = ('profiles', 'default_camera', 'max_image_age', 'max_image_pixels',
              'standing_tasks', 'diagnostics_period', 'latency_window', 'max_queue',
              'max_aspect_ratio')


class ParameterError(SuperneuronError, ValueError):
    """A parameter value is malformed or inconsistent with the others."""


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name, the topic it is read from and how (raw Image or CompressedImage)."""

    name: str
    topic: str
    transport: str = 'raw'


@dataclass(frozen=True)
class StandingTask:
    """A task answered continuously on one camera: every frame (rate_hz 0) or at most rate_hz."""

    task: str
    camera: str
    rate_hz: float = 0.0

    @property
    def period_s(self) -> float:
        """Seconds between two answers at most; 0 means every frame."""
        return 1.0 / self.rate_hz if self.rate_hz > 0 else 0.0


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of the node, parsed and checked."""

    autostart: bool = True
    model_path: str = ''
    quantization: str = 'nf4'
    device: str = 'auto'
    dtype: str = 'auto'
    quantize_modules: str = 'language'
    accept_failed_selftest: bool = False
    allow_quantization_mismatch: bool = False
    profiles: tuple[str, ...] = ()
    max_exit_layer: int = -1  # load at least this deep (-1: the deepest profile)
    data_dir: str = DEFAULT_DATA_DIR
    cameras: tuple[CameraSpec, ...] = ()
    default_camera: str = ''
    max_image_age: float = 1.0
    max_image_pixels: int = 8_294_400
    standing_tasks: tuple[StandingTask, ...] = ()
    diagnostics_period: float = 1.0
    latency_window: float = 10.0
    max_queue: int = 64
    max_aspect_ratio: float = 10.0

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Names of the configured cameras, in order."""
        return tuple(camera.name for camera in self.cameras)

    @property
    def resolved_default_camera(self) -> str:
        """Return the default camera: the parameter, or the first camera when it is empty."""
        if self.default_camera:
            return self.default_camera
        return self.cameras[0].name if self.cameras else ''

    def load_config(self) -> LoadConfig:
        """Build the core's LoadConfig from the model parameters."""
        if not self.model_path:
            raise ParameterError('model_path is empty; set it to the folder of a local '
                                 'Hugging Face vision-language model')
        try:
            return LoadConfig(self.model_path, self.quantization, self.device, self.dtype,
                              quantize_modules=self.quantize_modules,
                              accept_failed_selftest=self.accept_failed_selftest,
                              allow_quantization_mismatch=self.allow_quantization_mismatch)
        except ValueError as exc:
            raise ParameterError(f'{exc}; fix the parameter in the params file') from exc


def topic_token(name: str) -> str:
    """Turn a task name into a valid ROS topic token (letters, digits, underscores)."""
    token = re.sub(r'[^A-Za-z0-9_]', '_', name)
    return token if token[:1].isalpha() else 't_' + token


def parse_standing_task(entry: str, cameras: Sequence[str]) -> StandingTask:
    """Parse ``TASK@CAMERA`` or ``TASK@CAMERA:RATE_HZ`` and check that the camera exists."""
    match = re.fullmatch(r'\s*([^@:\s]+)\s*@\s*([^@:\s]+)\s*(?::\s*([^\s]+))?\s*', entry)
    if not match:
        raise ParameterError(f'standing task {entry!r} is not TASK@CAMERA or '
                             'TASK@CAMERA:RATE_HZ (for example "door_open@front:2.0")')
    task, camera, rate_text = match.groups()
    if camera not in cameras:
        raise ParameterError(f'standing task {entry!r} names camera {camera!r}, which is not in '
                             f'cameras {list(cameras)}')
    rate = 0.0
    if rate_text is not None:
        try:
            rate = float(rate_text)
        except ValueError:
            rate = -1.0
        if not rate > 0 or rate == float('inf'):
            raise ParameterError(f'standing task {entry!r} has rate {rate_text!r}; give a '
                                 'positive number of answers per second, or no rate for every '
                                 'frame')
    return StandingTask(task, camera, rate)


def parse_standing_tasks(entries: Sequence[str], cameras: Sequence[str]
                         ) -> tuple[StandingTask, ...]:
    """Parse every non-empty entry; refuse the same task twice on one camera."""
    tasks = tuple(parse_standing_task(e, cameras) for e in entries if e.strip())
    pairs = [(t.task, t.camera) for t in tasks]
    repeated = sorted({f'{t}@{c}' for t, c in pairs if pairs.count((t, c)) > 1})
    if repeated:
        raise ParameterError(f'standing tasks {repeated} are listed more than once; keep one')
    return tasks


def _descriptor(description: str, read_only: bool = False, floats: tuple = (),
                ints: tuple = (), constraints: str = '') -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, read_only=read_only,
                                     additional_constraints=constraints)
    if floats:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=floats[0], to_value=floats[1], step=0.0)]
    if ints:
        descriptor.integer_range = [IntegerRange(from_value=ints[0], to_value=ints[1], step=0)]
    return descriptor


# Per node: parameter name -> (problem, the default declared instead) for values from the params
# file that could not be declared (wrong type, out of range). read_settings reports them.
_DECLARATION_PROBLEMS: 'weakref.WeakKeyDictionary[Node, dict[str, tuple[str, Any]]]' = (
    weakref.WeakKeyDictionary())
_TYPE_NAMES = {bool: 'bool', int: 'integer', float: 'double', str: 'string', bytes: 'byte array'}


def _type_name(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        kinds = sorted({_type_name(v) for v in value})
        return f'{"/".join(kinds) or "empty"} array'
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _a(noun: str) -> str:
    return f'an {noun}' if noun[:1] in 'aeiou' else f'a {noun}'


def _range_problem(name: str, value: Any, descriptor: ParameterDescriptor, exc: Exception) -> str:
    ranges = list(descriptor.floating_point_range) + list(descriptor.integer_range)
    if not ranges:
        return f'parameter {name}: {exc}'
    return (f'parameter {name} is {value!r} in the params file, outside its range '
            f'{ranges[0].from_value:g} to {ranges[0].to_value:g}')


def _declare(node: Node, name: str, default: Any, descriptor: ParameterDescriptor) -> Any:
    """Declare one parameter; on a bad override declare the default and remember the problem."""
    untyped = isinstance(default, Parameter.Type)  # declared by type, with no default value
    expected = 'string array' if untyped else _type_name(default)
    given = parameter_override(node, name)
    try:
        return node.declare_parameter(name, default, descriptor)
    except InvalidParameterTypeException as exc:
        problem = (f'parameter {name} must be {_a(expected)}, but the params file gives '
                   f'{given!r} ({_a(_type_name(given))})' if given is not None else str(exc))
        if isinstance(default, float) and type(given) is int and float(given) == given:
            try:  # an integer for a double: the most common YAML slip, and lossless
                return node.declare_parameter(name, float(given), descriptor,
                                              ignore_override=True)
            except InvalidParameterValueException as range_exc:
                problem = _range_problem(name, given, descriptor, range_exc)
    except InvalidParameterValueException as exc:
        problem = _range_problem(name, given, descriptor, exc)
    _DECLARATION_PROBLEMS.setdefault(node, {})[name] = (problem, None if untyped else default)
    return node.declare_parameter(name, default, descriptor, ignore_override=True)


def _current(node: Node, name: str) -> Any:
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:
        return None


def declaration_problems(node: Node) -> list[str]:
    """Return the bad params-file values still in effect (their parameter kept its default)."""
    return [problem for name, (problem, fallback) in _DECLARATION_PROBLEMS.get(node, {}).items()
            if _current(node, name) == fallback]


def declare_node_parameters(node: Node) -> None:
    """Declare every parameter, the per-camera ones after reading the `cameras` list."""
    d = NodeSettings()
    _declare(node, 'autostart', d.autostart, _descriptor(
        'Configure and activate on start-up (false: wait for lifecycle transitions).', True))
    _declare(node, 'model_path', d.model_path, _descriptor(
        'Folder of the local Hugging Face vision-language model (never downloaded).', True))
    _declare(node, 'quantization', d.quantization, _descriptor(
        'Weight quantization: bitsandbytes nf4/fp4/int8, torchao int4 weight-only (where '
        'bitsandbytes fails, e.g. JetPack 6), or none.', True,
        constraints='one of nf4, fp4, int8, torchao-int4, none'))
    _declare(node, 'quantize_modules', d.quantize_modules, _descriptor(
        'Which linear layers are quantized: language (decoder layers only; vision tower and '
        'projector in the compute dtype) or all. Must match the profiles.', True,
        constraints='language or all'))
    _declare(node, 'accept_failed_selftest', d.accept_failed_selftest, _descriptor(
        'Serve although the quantization self-test failed (answers may be wrong; reported in '
        '/diagnostics).', True))
    _declare(node, 'allow_quantization_mismatch', d.allow_quantization_mismatch, _descriptor(
        'Run profiles calibrated under another quantization (accuracy not the calibrated one; '
        'reported in /diagnostics).', True))
    _declare(node, 'device', d.device, _descriptor(
        'Device for the model.', True, constraints='auto, cpu, cuda or cuda:N'))
    _declare(node, 'dtype', d.dtype, _descriptor(
        'Compute dtype.', True, constraints='auto, float32, float16 or bfloat16'))
    _declare(node, 'profiles', Parameter.Type.STRING_ARRAY, _descriptor(
        'Profile folders, or folders of them, made by `superneuron calibrate`. Changeable while '
        'configured: added profiles load at once (within the loaded layers), removed ones '
        'unload; a change that cannot be applied is refused with the reason.'))
    _declare(node, 'max_exit_layer', d.max_exit_layer, _descriptor(
        'Load the decoder at least to this layer (room for profiles added or taught later); '
        '-1: as deep as the deepest profile.', True, ints=(-1, 100000)))
    _declare(node, 'data_dir', d.data_dir, _descriptor(
        'Folder of recorded datasets and taught profiles; record and teach stay inside it.', True))
    _declare(node, 'cameras', ['camera'], _descriptor(
        'Camera names; each has <name>.topic and <name>.transport parameters.', True))
    for name in dict.fromkeys(_string_list(node, 'cameras')):
        if not _NAME.match(name):
            continue  # read_settings reports it; the node stays up to say so
        transport = _declare(node, f'{name}.transport', 'raw', _descriptor(
            f'How camera {name} is read: raw (sensor_msgs/Image) or compressed '
            '(sensor_msgs/CompressedImage).', True, constraints='raw or compressed')).value
        suffix = '/compressed' if transport == 'compressed' else ''
        _declare(node, f'{name}.topic', f'{name}/image_raw{suffix}', _descriptor(
            f'Topic of camera {name}.', True))
    _declare(node, 'default_camera', d.default_camera, _descriptor(
        'Camera used by ~/ask when the request names none; empty: the first camera.'))
    _declare(node, 'max_image_age', d.max_image_age, _descriptor(
        'Oldest frame (seconds since the node received it) that is answered; 0: no limit. '
        'Cameras with older frames are reported stale.', floats=(0.0, 3600.0)))
    _declare(node, 'max_image_pixels', d.max_image_pixels, _descriptor(
        'Largest image (width x height) accepted; 0: no limit.', ints=(0, 2 ** 31 - 1)))
    _declare(node, 'standing_tasks', Parameter.Type.STRING_ARRAY, _descriptor(
        'Tasks answered continuously, as TASK@CAMERA (every frame) or TASK@CAMERA:RATE_HZ.'))
    _declare(node, 'diagnostics_period', d.diagnostics_period, _descriptor(
        'Seconds between /diagnostics and ~/latency messages.', floats=(0.1, 60.0)))
    _declare(node, 'latency_window', d.latency_window, _descriptor(
        'Seconds of answers over which p50/p95 latency and answer rate are computed.',
        floats=(1.0, 3600.0)))
    _declare(node, 'max_queue', d.max_queue, _descriptor(
        'Ask calls that may wait for the model; more are refused at once as busy.',
        ints=(1, 100000)))
    _declare(node, 'max_aspect_ratio', d.max_aspect_ratio, _descriptor(
        'Most elongated image accepted (long side / short side); 0: no limit. Image '
        'processors scale the short side up, so a 1xN image would cost gigabytes.',
        floats=(0.0, 1e6)))


def _string_list(node: Node, name: str) -> list[str]:
    try:
        value = node.get_parameter(name).value
    except ParameterUninitializedException:
        return []
    return [v for v in (value or []) if v.strip()]


def read_settings(node: Node) -> NodeSettings:
    """Read every declared parameter into NodeSettings, checking the cross-parameter rules."""
    problems = declaration_problems(node)
    if problems:
        raise ParameterError('; '.join(problems) + ' (the node stays unconfigured: fix the '
                             'params file and restart it, or set the parameter and configure)')
    value = node.get_parameter
    cameras = []
    for name in _string_list(node, 'cameras'):
        if not _NAME.match(name):
            raise ParameterError(f'camera name {name!r} must start with a letter and hold only '
                                 'letters, digits and underscores; rename it in cameras')
        transport = value(f'{name}.transport').value
        if transport not in TRANSPORTS:
            raise ParameterError(f'{name}.transport is {transport!r}; use raw or compressed')
        cameras.append(CameraSpec(name, value(f'{name}.topic').value, transport))
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ParameterError(f'cameras {names} lists a name twice; keep one')
    settings = NodeSettings(
        autostart=value('autostart').value, model_path=value('model_path').value,
        quantization=value('quantization').value, device=value('device').value,
        dtype=value('dtype').value, quantize_modules=value('quantize_modules').value,
        accept_failed_selftest=value('accept_failed_selftest').value,
        allow_quantization_mismatch=value('allow_quantization_mismatch').value,
        profiles=tuple(_string_list(node, 'profiles')),
        max_exit_layer=value('max_exit_layer').value, data_dir=value('data_dir').value,
        cameras=tuple(cameras), default_camera=value('default_camera').value,
        max_image_age=value('max_image_age').value,
        max_image_pixels=value('max_image_pixels').value,
        standing_tasks=parse_standing_tasks(_string_list(node, 'standing_tasks'), names),
        diagnostics_period=value('diagnostics_period').value,
        latency_window=value('latency_window').value, max_queue=value('max_queue').value,
        max_aspect_ratio=value('max_aspect_ratio').value)
    check_default_camera(settings.default_camera, names)
    return settings


def check_standing_tasks(tasks: Sequence[StandingTask], loaded: Sequence[str]) -> None:
    """
    Refuse standing tasks that name a task no loaded profile provides.

    Configure fails with this error rather than running only some of them, so that the
    standing_tasks parameter always equals what the node runs.
    """
    unknown = [f'{t.task}@{t.camera}' for t in tasks if t.task not in loaded]
    if unknown:
        raise ParameterError(f'standing_tasks {unknown} name task(s) that no profile provides '
                             f'(loaded: {sorted(loaded)}); fix standing_tasks or profiles')


def check_default_camera(name: str, cameras: Sequence[str]) -> None:
    """Refuse a default camera that is not configured (empty means the first one)."""
    if name and name not in cameras:
        raise ParameterError(f'default_camera {name!r} is not in cameras {list(cameras)}')


def updated_settings(settings: NodeSettings, params: Sequence[Parameter]) -> NodeSettings:
    """Return `settings` with the changeable `params` applied; raise ParameterError if invalid."""
    changes: dict[str, Any] = {}
    for param in params:
        if param.name not in CHANGEABLE:
            continue  # not ours (use_sim_time), or read-only and refused by its descriptor
        if param.name in ('profiles', 'standing_tasks'):
            entries = [v for v in (param.value or []) if v.strip()]
            changes[param.name] = (tuple(entries) if param.name == 'profiles'
                                   else parse_standing_tasks(entries, settings.camera_names))
        else:
            changes[param.name] = param.value
    if 'default_camera' in changes:
        check_default_camera(changes['default_camera'], settings.camera_names)
    return replace(settings, **changes)
