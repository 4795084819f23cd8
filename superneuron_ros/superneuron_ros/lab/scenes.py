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

A `Scene` is a description (background, shapes, brightness, noise); `render` turns it into an RGB
image. Every task has several wordings (:mod:`~superneuron_ros.lab.scene_questions`), and
:func:`shift_scene` makes the images of a held-out condition outside the training distribution.
Everything is a pure function of a `numpy.random.Generator` or of the scene itself, so the same
seed always gives the same bytes. Coordinates are relative: ``x`` and ``y`` are fractions of the
image width and height, ``size`` (half a shape's extent) is a fraction of the shorter side.
"""

from dataclasses import replace
from functools import partial

import cv2
import numpy as np
from superneuron_ros.errors import DataError, ImageError, UnknownTaskError
from superneuron_ros.lab.scene_questions import fixed_phrasings, presence_phrasings
from superneuron_ros.lab.scene_types import COLOURS, KINDS, MAX_SHAPES, Scene, Shape
from superneuron_ros.method.tasks import TaskSpec

LARGEST_MARGIN = 1.5  # the largest shape's area must exceed every other one's by this factor
MIN_DX = 0.15  # least horizontal distance of centres (fraction of width) for left/right
_GAP = 0.03  # least distance between two shapes' boxes
_MIN_SIZE = 0.07
_MAX_SIZE = {1: 0.3, 2: 0.24, 3: 0.2, 4: 0.18}
_MAX_NOISE = 10.0  # varied scenes (plain ones: 6)
BRIGHTNESS = (0.6, 1.25)  # range of the brightness factor of random scenes
TOUCH = 0.01  # a shape whose box is this close to the border (fraction of the side) touches it
CLEAR_OF_EDGE = 0.06  # ... and one at least this far from every border clearly does not
HALF_MARGIN = 0.05  # a shape centred this far left of the middle is in the left half
SHIFTS: dict[str, dict[str, float]] = {  # held-out conditions, outside the training ranges
    'dim': {'brightness': 0.5}, 'bright': {'brightness': 1.4}, 'noisy': {'noise': 16.0}}
_MIN_BACKGROUND_DISTANCE = 80.0  # Euclidean RGB distance between background and every colour
_SUBPIXEL = 4  # fractional bits of the coordinates handed to OpenCV
_YES_NO = {'yes': ('yeah', 'yep', 'true', 'correct'), 'no': ('nope', 'false', 'incorrect')}
_NUMBERS = ('one', 'two', 'three', 'four')


def _presence_task(colour: str) -> TaskSpec:
    """Return the yes/no task asking whether a shape of `colour` is present."""
    return TaskSpec(
        name=f'{colour}_present', question=presence_phrasings(colour, 'seen')[0],
        labels=('yes', 'no'), aliases=_YES_NO,
        description=f'yes when at least one shape is {colour}')


TASKS: dict[str, TaskSpec] = {
    **{f'{colour}_present': _presence_task(colour) for colour in COLOURS},
    'shape_colour': TaskSpec(
        name='shape_colour', question=fixed_phrasings('shape_colour', 'seen')[0],
        labels=tuple(COLOURS), aliases={'purple': ('violet',)},
        description='asked only when one shape is clearly the largest'),
    'red_left_of_blue': TaskSpec(
        name='red_left_of_blue',
        question=fixed_phrasings('red_left_of_blue', 'seen')[0],
        labels=('left', 'right'),
        aliases={'left': ('to the left', 'on the left'),
                 'right': ('to the right', 'on the right')},
        description='asked only when there is one red and one blue shape, clearly apart'),
    'shape_count': TaskSpec(
        name='shape_count', question=fixed_phrasings('shape_count', 'seen')[0],
        labels=tuple(str(n) for n in range(1, MAX_SHAPES + 1)),
        aliases={str(n): (word,) for n, word in enumerate(_NUMBERS, start=1)},
        description='the number of shapes, 1 to 4'),
    'red_touching_edge': TaskSpec(
        name='red_touching_edge', question=fixed_phrasings('red_touching_edge', 'seen')[0],
        labels=('yes', 'no'), aliases=_YES_NO,
        description=f'asked only when there is one red shape, its box within {TOUCH} of the '
                    f'border (yes) or at least {CLEAR_OF_EDGE} from every border (no)'),
    'shape_in_left_half': TaskSpec(
        name='shape_in_left_half', question=fixed_phrasings('shape_in_left_half', 'seen')[0],
        labels=('yes', 'no'), aliases=_YES_NO,
        description=f'yes when a shape is centred at least {HALF_MARGIN} left of the middle, '
                    'no when every shape lies wholly in the right half; else not asked'),
}


def phrasings(task_name: str, split: str = 'seen') -> tuple[str, ...]:
    """Return a task's wordings: 'seen' (trained on; the first is its question) or 'unseen'."""
    get_task(task_name)
    if task_name.endswith('_present'):
        return presence_phrasings(task_name[:-len('_present')], split)
    return fixed_phrasings(task_name, split)


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
    if task_name == 'red_touching_edge':
        reds = [shape for shape in shapes if shape.colour == 'red']
        if len(reds) != 1:
            return None
        gap = edge_gap(reds[0])
        return 'yes' if gap <= TOUCH else 'no' if gap >= CLEAR_OF_EDGE else None
    if task_name == 'shape_in_left_half':
        if any(shape.x <= 0.5 - HALF_MARGIN for shape in shapes):
            return 'yes'
        return 'no' if all(shape.x - shape.size >= 0.5 + _GAP for shape in shapes) else None
    raise AssertionError(f'task {task_name!r} has no ground truth rule')  # a bug, not user input


def qa_pairs(scene: Scene) -> list[tuple[str, str]]:
    """Return (question, answer) for every task that applies to the scene."""
    pairs = []
    for name, spec in TASKS.items():
        label = answer(name, scene)
        if label is not None:
            pairs.append((spec.question, label))
    return pairs


def edge_gap(shape: Shape) -> float:
    """Return the distance of a shape's box to the nearest border (on a square image)."""
    return min(shape.x - shape.size, 1.0 - shape.x - shape.size,
               shape.y - shape.size, 1.0 - shape.y - shape.size)


def _random_background(rng: np.random.Generator, varied: bool) -> tuple[int, int, int]:
    """
    Draw a background colour far from every shape's.

    Plain: a dark or grey, slightly tinted tone. Varied: half the time any colour, else a grey
    tone from a wider range with a stronger tint.
    """
    coloured = varied and rng.random() < 0.5
    while True:
        if coloured:
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        elif not varied:
            grey = int(rng.integers(20, 111))
            tint = rng.integers(-12, 13, size=3)
            colour = tuple(int(c) for c in np.clip(grey + tint, 0, 255))
        else:
            grey = int(rng.integers(20, 141))
            tint = rng.integers(-16, 17, size=3)
            colour = tuple(int(c) for c in np.clip(grey + tint, 0, 255))
        if all(np.linalg.norm(np.subtract(colour, ref)) >= _MIN_BACKGROUND_DISTANCE
               for ref in COLOURS.values()):
            return colour


def _apart(a: Shape, b: Shape) -> bool:
    """Return whether the boxes of two shapes are separated by at least the gap."""
    reach = a.size + b.size + _GAP
    return abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach


def random_scene(rng: np.random.Generator, n_shapes: int | None = None,
                 colours: tuple[str, ...] | list[str] | None = None,
                 x_range: tuple[float, float] = (0.0, 1.0), varied: bool = False) -> Scene:
    """
    Draw a scene of 1..4 non-overlapping shapes (`n_shapes` of them when given).

    Colours are drawn from `colours` (default: the whole palette), kinds, sizes and positions
    uniformly, the shapes' boxes inside the horizontal band `x_range`; the background is a dark
    or grey tone, flat or a vertical gradient, with noise up to 6 grey levels. `varied` scenes
    (what the demo model trains on) also get coloured backgrounds, a brightness factor in
    BRIGHTNESS and noise up to 10; plain ones draw exactly what earlier versions drew.
    """
    lo, hi = float(x_range[0]), float(x_range[1])
    if not 0.0 <= lo < hi <= 1.0 or hi - lo < 4 * _MIN_SIZE:
        raise DataError(f'x_range={x_range} must be a band of [0, 1] at least '
                        f'{4 * _MIN_SIZE} wide')
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
        size = float(rng.uniform(_MIN_SIZE, min(_MAX_SIZE[n], 0.45 * (hi - lo))))
        placed = None
        for _ in range(200):
            x = rng.uniform(lo + size, hi - size)
            y = rng.uniform(size, 1.0 - size)
            candidate = Shape(kind, colour, round(float(x), 4), round(float(y), 4),
                              round(size, 4))
            if all(_apart(candidate, other) for other in shapes):
                placed = candidate
                break
        if placed is None:  # crowded: start again
            shapes = []
            continue
        shapes.append(placed)
    background = _random_background(rng, varied)
    background_end = _random_background(rng, varied) if rng.random() < 0.5 else None
    noise = round(float(rng.uniform(0.0, _MAX_NOISE if varied else 6.0)), 2)
    brightness = round(float(rng.uniform(*BRIGHTNESS)), 3) if varied else 1.0
    noise_seed = int(rng.integers(2 ** 31))
    return Scene(background=background, shapes=tuple(shapes), noise=noise,
                 background_end=background_end, noise_seed=noise_seed, brightness=brightness)


def shift_scene(scene: Scene, kind: str) -> Scene:
    """Return the scene under a held-out condition of SHIFTS (dim, bright or noisy)."""
    if kind not in SHIFTS:
        raise DataError(f'image shift {kind!r} is not one of {list(SHIFTS)}')
    return replace(scene, **SHIFTS[kind])


def _recolour(scene: Scene, index: int, colour: str) -> Scene:
    """Return the scene with shape `index` given another colour."""
    shapes = list(scene.shapes)
    shapes[index] = replace(shapes[index], colour=colour)
    return replace(scene, shapes=tuple(shapes))


def _propose(task_name: str, label: str, rng: np.random.Generator,
             varied: bool) -> Scene | None:
    """Draw a scene meant to have answer `label`; the caller checks it."""
    draw = partial(random_scene, varied=varied)
    if task_name.endswith('_present'):
        colour = task_name[:-len('_present')]
        if label == 'no':
            return draw(rng, colours=[c for c in COLOURS if c != colour])
        scene = draw(rng)
        if answer(task_name, scene) == 'yes':
            return scene
        return _recolour(scene, int(rng.integers(len(scene.shapes))), colour)
    if task_name == 'shape_colour':
        scene = draw(rng)
        largest = _largest(scene)
        return None if largest is None else _recolour(scene, scene.shapes.index(largest), label)
    if task_name == 'red_left_of_blue':
        others = [c for c in COLOURS if c not in ('red', 'blue')]
        scene = draw(rng, n_shapes=int(rng.integers(2, MAX_SHAPES + 1)), colours=others)
        xs = [shape.x for shape in scene.shapes]
        pairs = [(i, j) for i in range(len(xs)) for j in range(len(xs)) if xs[j] - xs[i] >= MIN_DX]
        if not pairs:
            return None
        left, right = pairs[int(rng.integers(len(pairs)))]
        red, blue = (left, right) if label == 'left' else (right, left)
        return _recolour(_recolour(scene, red, 'red'), blue, 'blue')
    if task_name == 'shape_count':
        return draw(rng, n_shapes=int(label))
    if task_name == 'red_touching_edge':
        scene = draw(rng, colours=[c for c in COLOURS if c != 'red'])
        index = int(rng.integers(len(scene.shapes)))
        scene = _recolour(scene, index, 'red')
        return _to_edge(scene, index, rng) if label == 'yes' else scene
    if task_name == 'shape_in_left_half':
        if label == 'no':
            return draw(rng, n_shapes=int(rng.integers(1, MAX_SHAPES)), x_range=(0.5 + _GAP, 1.0))
        return draw(rng)
    raise AssertionError(f'task {task_name!r} has no sampler')  # a bug, not user input


def _to_edge(scene: Scene, index: int, rng: np.random.Generator) -> Scene | None:
    """Return the scene with shape `index` moved against a random border; None if it collides."""
    shape = scene.shapes[index]
    side = int(rng.integers(4))
    x, y = shape.x, shape.y
    if side < 2:
        x = shape.size if side == 0 else round(1.0 - shape.size, 4)
    else:
        y = shape.size if side == 2 else round(1.0 - shape.size, 4)
    moved = replace(shape, x=x, y=y)
    if not all(_apart(moved, other) for i, other in enumerate(scene.shapes) if i != index):
        return None
    shapes = list(scene.shapes)
    shapes[index] = moved
    return replace(scene, shapes=tuple(shapes))


def sample_scene_for(task_name: str, label: str, rng: np.random.Generator,
                     varied: bool = False) -> Scene:
    """Draw a scene whose true answer to `task_name` is `label` (`varied`: see random_scene)."""
    spec = get_task(task_name)
    label = spec.labels[spec.label_index(label)]
    for _ in range(1000):
        scene = _propose(task_name, label, rng, varied)
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
    if scene.noise > 0 or scene.brightness != 1.0:
        pixels = image.astype(np.float32) * np.float32(scene.brightness)  # (H, W, 3)
        if scene.noise > 0:
            rng = np.random.default_rng(scene.noise_seed)
            noise = rng.standard_normal((height, width, 3), dtype=np.float32)  # (H, W, 3)
            pixels += noise * np.float32(scene.noise)
        image = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    return image
