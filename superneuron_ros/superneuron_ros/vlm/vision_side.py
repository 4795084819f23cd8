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
The vision side: the resolution a variable-resolution family's processor gives the vision tower.

Qwen2/2.5/3-VL take any image size (a pixel budget of side x side) and SmolVLM resizes the longest
edge to whole tiles; LLaVA-1.5 and LLaVA-OneVision have a fixed tower input and take no side. A
side is applied with :meth:`~superneuron_ros.vlm.families.Family.set_vision_side` (the one
implementation: calibration, the runtime and the benchmarks all go through it); this module checks
the side first and names the size it sets, ``(side, side)`` after the family's rounding, which is
what a profile records (``Profile.image_size``) and what the runtime sets again at load.
"""

import math
from typing import Any
import weakref

from superneuron_ros.errors import VisionSideError
from superneuron_ros.vlm.families import Family

_DEFAULTS: 'weakref.WeakKeyDictionary[Any, Any]' = weakref.WeakKeyDictionary()  # size before


def _size_field(size: Any, name: str) -> Any:
    """Return one entry of a processor's `size` (a dict or a dataclass), None when absent."""
    if isinstance(size, dict):
        return size.get(name)
    return getattr(size, name, None)


def refuse_fixed_input(family: Family, side: int) -> None:
    """Raise VisionSideError when `family` has a fixed tower input (no processor needed)."""
    if not family.takes_vision_side:
        raise VisionSideError(
            f'{family.display_name} has a fixed vision input, so it takes no vision side '
            f'(got {side}); only Qwen2/2.5/3-VL and SmolVLM have a resolution setting: '
            'calibrate or run without --vision-side')


def vision_size(family: Family, image_processor: Any, side: int) -> tuple[int, int]:
    """
    Return the (height, width) bound that `side` sets on this processor; change nothing.

    Raises VisionSideError for a family with a fixed tower input, a side that is not a positive
    integer, or one below the processor's minimum (Qwen's ``size['shortest_edge']`` pixels).
    """
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise VisionSideError(f'a vision side must be a positive number of pixels, got {side!r}')
    refuse_fixed_input(family, side)
    bound = family.longest_edge_bound(image_processor, side)
    least = _size_field(image_processor.size, 'shortest_edge')
    if least is not None and bound < int(least):
        raise VisionSideError(
            f'vision side {side} gives {bound} pixels, below the {int(least)} pixels that '
            f"{family.display_name}'s processor keeps at least; use a side of at least "
            f'{math.isqrt(int(least) - 1) + 1}')
    rounded = family.bounded_side(image_processor, side)
    return rounded, rounded


def apply_vision_side(family: Family, image_processor: Any, side: int) -> tuple[int, int]:
    """Bound the processor's resize by `side` (checked as :func:`vision_size`); return the size."""
    size = vision_size(family, image_processor, side)
    old = family.set_vision_side(image_processor, size[0])
    _DEFAULTS.setdefault(image_processor, old)
    return size


def apply_image_size(family: Family, image_processor: Any,
                     size: tuple[int, int] | None) -> None:
    """
    Set the processor to a recorded (height, width) size (None: the processor's default).

    None puts back the size the processor had before this module first changed it. Raises
    VisionSideError when the size is not one a vision side of this processor sets (not square,
    rounded to another size, below the minimum, or a fixed-input family); nothing changes then.
    """
    if size is None:
        if image_processor in _DEFAULTS:
            image_processor.size = _DEFAULTS[image_processor]
        return
    check_image_size(family, image_processor, size)
    apply_vision_side(family, image_processor, int(size[0]))


def check_image_size(family: Family, image_processor: Any,
                     size: tuple[int, int] | None) -> None:
    """Raise VisionSideError unless this processor can be set to `size`; change nothing."""
    if size is None:
        return
    height, width = (int(v) for v in size)
    if height != width or vision_size(family, image_processor, height) != (height, width):
        allowed = '' if not family.takes_vision_side else (
            f' (a side of {height} sets {_text(vision_size(family, image_processor, height))})')
        raise VisionSideError(
            f'{family.display_name} cannot preprocess at {height}x{width}{allowed}: sizes are '
            'square bounds that --vision-side sets; recalibrate with `superneuron calibrate '
            '--vision-side N`')


def _text(size: tuple[int, int]) -> str:
    return f'{size[0]}x{size[1]}'
