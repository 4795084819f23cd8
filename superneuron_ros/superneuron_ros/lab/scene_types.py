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

"""The scene description: shape kinds, the colour palette, `Shape` and `Scene` (checked)."""

from dataclasses import dataclass

import numpy as np
from superneuron_ros.errors import DataError

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
_AREA_FACTOR = {'circle': np.pi, 'square': 4.0, 'triangle': 2.0}


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
    """
    A background (flat, or a vertical gradient to `background_end`), shapes and pixel noise.

    `brightness` scales the whole rendered image (a dim or bright camera) before the noise.
    """

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]
    noise: float = 0.0
    background_end: tuple[int, int, int] | None = None
    noise_seed: int = 0
    brightness: float = 1.0

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
        if not 0.0 < self.brightness <= 4.0:
            raise DataError(f'brightness={self.brightness} must lie in (0, 4]')
