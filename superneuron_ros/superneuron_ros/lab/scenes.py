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
Generated scenes of simple coloured shapes, with exact answers to categorical questions.

A `Scene` is a description (background, shapes, noise); `render` turns it into an RGB image.
Everything is a pure function of a `numpy.random.Generator` or of the scene itself, so the same
seed always gives the same bytes. Coordinates are relative: ``x`` and ``y`` are fractions of the
image width and height, ``size`` (half a shape's extent) is a fraction of the shorter side.
"""

from dataclasses import dataclass, replace
import logging

import cv2
import numpy as np
from superneuron_ros.errors import DataError, ImageError, UnknownTaskError
from superneuron_ros.method.tasks import TaskSpec

_LOGGER = logging.getLogger(__name__)

KINDS = ('circle', 'square', 'triangle')
COLOURS: dict[str, tuple[int, int, int]] = {
    'red': (220, 40, 40),
    'green': (40, 180, 60),
    'blue': (40, 80, 230),
    'yellow': (240, 210, 40),
    'purple': (150, 60, 200),
    'white': (240, 240, 240),
}
MAX_SHAPES = 4
LARGEST_MARGIN = 1.5  # the largest shape's area must exceed every other one's by this factor
MIN_DX = 0.15  # least horizontal distance of centres (fraction of width) for left/right
_GAP = 0.03  # least distance between two shapes' boxes
_MIN_SIZE = 0.07
_MAX_SIZE = {1: 0.3, 2: 0.24, 3: 0.2, 4: 0.18}
_MAX_NOISE = 6.0
_MIN_BACKGROUND_DISTANCE = 80.0  # Euclidean RGB distance between background and every colour
_SUBPIXEL = 4  # fractional bits of the coordinates handed to OpenCV
_AREA_FACTOR = {'circle': np.pi, 'square': 4.0, 'triangle': 2.0}
_YES_NO = {'yes': ('yeah', 'yep', 'true', 'correct'), 'no': ('nope', 'false', 'incorrect')}
_NUMBERS = ('one', 'two', 'three', 'four')


@dataclass(frozen=True)
class Shape:
    """One filled shape: kind, colour name, centre (x, y) and half extent `size`."""

    kind: str
    colour: str
    x: float
    y: float
    size: float

    def __post_init__(self) -> None:
        """Check the fields; raise DataError naming the offending one."""
        if self.kind not in KINDS:
            raise DataError(f'kind {self.kind!r} is not one of {list(KINDS)}')
        if self.colour not in COLOURS:
            raise DataError(f'colour {self.colour!r} is not one of {list(COLOURS)}')
        for name in ('x', 'y'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f'{name}={getattr(self, name)} must lie in [0, 1]')
        if not 0.0 < self.size <= 0.5:
            raise DataError(f'size={self.size} must lie in (0, 0.5]')

    @property
    def area(self) -> float:
        """Return the area in units of the shorter image side squared."""
        return float(_AREA_FACTOR[self.kind] * self.size ** 2)


@dataclass(frozen=True)
class Scene:
    """A background (flat, or a vertical gradient to `background_end`), shapes and pixel noise."""

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]
    noise: float = 0.0
    background_end: tuple[int, int, int] | None = None
    noise_seed: int = 0

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and check ranges."""
        object.__setattr__(self, 'shapes', tuple(self.shapes))
        for name in ('background', 'background_end'):
            value = getattr(self, name)
            if value is None and name == 'background_end':
                continue
            try:
                rgb = tuple(int(c) for c in value)
            except (TypeError, ValueError):
                rgb = ()
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise DataError(f'{name}={value!r} must be three integers in [0, 255] (RGB)')
            object.__setattr__(self, name, rgb)
        if not all(isinstance(shape, Shape) for shape in self.shapes):
            raise DataError('shapes must be Shape instances')
        if self.noise < 0:
            raise DataError(f'noise={self.noise} must be >= 0 (standard deviation in grey levels)')


def _presence_task(colour: str) -> TaskSpec:
    """Return the yes/no task asking whether a shape of `colour` is present."""
    return TaskSpec(
        name=f'{colour}_present', question=f'Is there a {colour} shape in the image?',
        labels=('yes', 'no'), aliases=_YES_NO,
        description=f'yes when at least one shape is {colour}')


TASKS: dict[str, TaskSpec] = {
    **{f'{colour}_present': _presence_task(colour) for colour in COLOURS},
    'shape_colour': TaskSpec(
        name='shape_colour', question='What colour is the largest shape?',
        labels=tuple(COLOURS), aliases={'purple': ('violet',)},
        description='asked only when one shape is clearly the largest'),
    'red_left_of_blue': TaskSpec(
        name='red_left_of_blue',
        question='Is the red shape to the left or to the right of the blue shape?',
        labels=('left', 'right'),
        aliases={'left': ('to the left', 'on the left'),
                 'right': ('to the right', 'on the right')},
        description='asked only when there is one red and one blue shape, clearly apart'),
    'shape_count': TaskSpec(
        name='shape_count', question='How many shapes are there?',
        labels=tuple(str(n) for n in range(1, MAX_SHAPES + 1)),
        aliases={str(n): (word,) for n, word in enumerate(_NUMBERS, start=1)},
        description='the number of shapes, 1 to 4'),
}


def get_task(task_name: str) -> TaskSpec:
    """Return the TaskSpec of a scene task; raise UnknownTaskError naming the known ones."""
    try:
        return TASKS[task_name]
    except KeyError:
        raise UnknownTaskError(f'unknown scene task {task_name!r}; use one of '
                               f'{list(TASKS)}') from None


def _largest(scene: Scene) -> Shape | None:
    """Return the clearly largest shape, or None when there is no clear one."""
    if not scene.shapes:
        return None
    ranked = sorted(scene.shapes, key=lambda shape: shape.area, reverse=True)
    if len(ranked) > 1 and ranked[0].area < LARGEST_MARGIN * ranked[1].area:
        return None
    return ranked[0]


def answer(task_name: str, scene: Scene) -> str | None:
    """Return the true label of a task for a scene, or None when the question does not apply."""
    get_task(task_name)
    shapes = scene.shapes
    if task_name.endswith('_present'):
        colour = task_name[:-len('_present')]
        return 'yes' if any(shape.colour == colour for shape in shapes) else 'no'
    if task_name == 'shape_colour':
        largest = _largest(scene)
        return None if largest is None else largest.colour
    if task_name == 'red_left_of_blue':
        reds = [shape for shape in shapes if shape.colour == 'red']
        blues = [shape for shape in shapes if shape.colour == 'blue']
        if len(reds) != 1 or len(blues) != 1 or abs(blues[0].x - reds[0].x) < MIN_DX:
            return None
        return 'left' if reds[0].x < blues[0].x else 'right'
    if task_name == 'shape_count':
        return str(len(shapes)) if 1 <= len(shapes) <= MAX_SHAPES else None
    raise AssertionError(f'task {task_name!r} has no ground truth rule')  # a bug, not user input


def qa_pairs(scene: Scene) -> list[tuple[str, str]]:
    """Return (question, answer) for every task that applies to the scene."""
    pairs = []
    for name, spec in TASKS.items():
        label = answer(name, scene)
        if label is not None:
            pairs.append((spec.question, label))
    return pairs


def _random_background(rng: np.random.Generator) -> tuple[int, int, int]:
    """Draw a dark or grey, slightly tinted colour far from every shape colour."""
    while True:
        grey = int(rng.integers(20, 111))
        tint = rng.integers(-12, 13, size=3)
        colour = tuple(int(c) for c in np.clip(grey + tint, 0, 255))
        if all(np.linalg.norm(np.subtract(colour, ref)) >= _MIN_BACKGROUND_DISTANCE
               for ref in COLOURS.values()):
            return colour


def _apart(a: Shape, b: Shape) -> bool:
    """Return whether the boxes of two shapes are separated by at least the gap."""
    reach = a.size + b.size + _GAP
    return abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach


def random_scene(rng: np.random.Generator, n_shapes: int | None = None,
                 colours: tuple[str, ...] | list[str] | None = None) -> Scene:
    """
    Draw a scene of 1..4 non-overlapping shapes (`n_shapes` of them when given).

    Colours are drawn from `colours` (default: the whole palette), kinds, sizes and positions
    uniformly; the background is a dark or grey tone, flat or a vertical gradient.
    """
    n = int(rng.integers(1, MAX_SHAPES + 1)) if n_shapes is None else int(n_shapes)
    if not 1 <= n <= MAX_SHAPES:
        raise DataError(f'n_shapes={n_shapes} must lie in [1, {MAX_SHAPES}]')
    palette = list(COLOURS) if colours is None else list(colours)
    unknown = [c for c in palette if c not in COLOURS]
    if not palette or unknown:
        raise DataError(f'colours {palette} must be a non-empty subset of {list(COLOURS)}')
    shapes: list[Shape] = []
    while len(shapes) < n:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        colour = palette[int(rng.integers(len(palette)))]
        size = float(rng.uniform(_MIN_SIZE, _MAX_SIZE[n]))
        placed = None
        for _ in range(200):
            x, y = rng.uniform(size, 1.0 - size, size=2)
            candidate = Shape(kind, colour, round(float(x), 4), round(float(y), 4),
                              round(size, 4))
            if all(_apart(candidate, other) for other in shapes):
                placed = candidate
                break
        if placed is None:  # crowded: start again
            shapes = []
            continue
        shapes.append(placed)
    background = _random_background(rng)
    background_end = _random_background(rng) if rng.random() < 0.5 else None
    noise = round(float(rng.uniform(0.0, _MAX_NOISE)), 2)
    return Scene(background=background, shapes=tuple(shapes), noise=noise,
                 background_end=background_end, noise_seed=int(rng.integers(2 ** 31)))


def _recolour(scene: Scene, index: int, colour: str) -> Scene:
    """Return the scene with shape `index` given another colour."""
    shapes = list(scene.shapes)
    shapes[index] = replace(shapes[index], colour=colour)
    return replace(scene, shapes=tuple(shapes))


def _propose(task_name: str, label: str, rng: np.random.Generator) -> Scene | None:
    """Draw a scene meant to have answer `label`; the caller checks it."""
    if task_name.endswith('_present'):
        colour = task_name[:-len('_present')]
        if label == 'no':
            return random_scene(rng, colours=[c for c in COLOURS if c != colour])
        scene = random_scene(rng)
        if answer(task_name, scene) == 'yes':
            return scene
        return _recolour(scene, int(rng.integers(len(scene.shapes))), colour)
    if task_name == 'shape_colour':
        scene = random_scene(rng)
        largest = _largest(scene)
        return None if largest is None else _recolour(scene, scene.shapes.index(largest), label)
    if task_name == 'red_left_of_blue':
        others = [c for c in COLOURS if c not in ('red', 'blue')]
        scene = random_scene(rng, n_shapes=int(rng.integers(2, MAX_SHAPES + 1)), colours=others)
        xs = [shape.x for shape in scene.shapes]
        pairs = [(i, j) for i in range(len(xs)) for j in range(len(xs)) if xs[j] - xs[i] >= MIN_DX]
        if not pairs:
            return None
        left, right = pairs[int(rng.integers(len(pairs)))]
        red, blue = (left, right) if label == 'left' else (right, left)
        return _recolour(_recolour(scene, red, 'red'), blue, 'blue')
    if task_name == 'shape_count':
        return random_scene(rng, n_shapes=int(label))
    raise AssertionError(f'task {task_name!r} has no sampler')  # a bug, not user input


def sample_scene_for(task_name: str, label: str, rng: np.random.Generator) -> Scene:
    """Draw a scene whose true answer to `task_name` is `label`."""
    spec = get_task(task_name)
    label = spec.labels[spec.label_index(label)]
    for _ in range(1000):
        scene = _propose(task_name, label, rng)
        if scene is not None and answer(task_name, scene) == label:
            return scene
    raise RuntimeError(f'no scene found for {task_name}={label}; this is a bug, please report it')


def image_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """Return (H, W) from an int or a pair; raise ImageError outside 8..4096 pixels."""
    height, width = (size, size) if isinstance(size, (int, np.integer)) else size
    height, width = int(height), int(width)
    if not (8 <= height <= 4096 and 8 <= width <= 4096):
        raise ImageError(f'image size {height}x{width} must lie between 8 and 4096 pixels')
    return height, width


def _fixed(points: np.ndarray) -> np.ndarray:
    """Return pixel coordinates as int32 fixed point with `_SUBPIXEL` fractional bits."""
    return np.rint(points * (1 << _SUBPIXEL)).astype(np.int32)


def render(scene: Scene, size: int | tuple[int, int] = (96, 96)) -> np.ndarray:
    """Render a scene as an RGB image of shape (H, W, 3), dtype uint8, anti-aliased and noisy."""
    height, width = image_hw(size)
    top = np.asarray(scene.background, dtype=np.float32)
    if scene.background_end is None:
        image = np.empty((height, width, 3), dtype=np.uint8)  # (H, W, 3)
        image[:] = scene.background
    else:
        bottom = np.asarray(scene.background_end, dtype=np.float32)
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
        column = np.rint((1.0 - t) * top + t * bottom).astype(np.uint8)  # (H, 1, 3)
        image = np.ascontiguousarray(np.broadcast_to(column, (height, width, 3)))
    side = min(height, width)
    for shape in scene.shapes:
        cx, cy = shape.x * width - 0.5, shape.y * height - 0.5  # pixel centres are integers
        r = shape.size * side
        colour = COLOURS[shape.colour]
        if shape.kind == 'circle':
            centre = _fixed(np.array([cx, cy]))
            cv2.circle(image, (int(centre[0]), int(centre[1])), int(_fixed(np.array(r))),
                       colour, thickness=-1, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
            continue
        if shape.kind == 'square':
            corners = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
        else:  # triangle pointing up, filling the shape's box
            corners = [(cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)]
        cv2.fillConvexPoly(image, _fixed(np.array(corners)), colour, lineType=cv2.LINE_AA,
                           shift=_SUBPIXEL)
    if scene.noise > 0:
        rng = np.random.default_rng(scene.noise_seed)
        noise = rng.standard_normal((height, width, 3), dtype=np.float32)  # (H, W, 3)
        noisy = image.astype(np.float32) + noise * np.float32(scene.noise)
        image = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    return image
