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
The resolution profiles were calibrated at, applied to the processor of the model that runs them.

A profile records the size its activations were taken at (``Profile.image_size``: the square
bound ``--vision-side`` set, or None for the processor's default). One model preprocesses every
image once for all its tasks, so the loaded profiles must agree; the runtime sets the processor
to their size at load, and refuses, like any other fingerprint field, a mix of sizes or a size
the model cannot take.
"""

from typing import Any, Sequence

from superneuron_ros.errors import ProfileMismatchError, VisionSideError
from superneuron_ros.method.profiles import Profile
from superneuron_ros.vlm.vision_side import apply_image_size, check_image_size


def _size_text(size: tuple[int, int] | None) -> str:
    return "the processor's default size" if size is None else f'{size[0]}x{size[1]}'


def profile_image_size(profiles: Sequence[Profile]) -> tuple[int, int] | None:
    """Return the one image size of `profiles`; raise ProfileMismatchError when they differ."""
    groups: dict[Any, list[str]] = {}
    for profile in profiles:
        groups.setdefault(profile.image_size, []).append(profile.name)
    if len(groups) > 1:
        parts = '; '.join(f'{", ".join(repr(n) for n in names)} at {_size_text(size)}'
                          for size, names in groups.items())
        raise ProfileMismatchError(
            f'the profiles were calibrated at different resolutions ({parts}); one model '
            'preprocesses each image once for every task, so load profiles of one resolution, '
            'or recalibrate them with the same `superneuron calibrate --vision-side N`')
    return next(iter(groups), None)


def check_profile_image_size(loaded: Any,
                             profiles: Sequence[Profile]) -> tuple[int, int] | None:
    """
    Return the one size of `profiles` after checking that `loaded` can take it; change nothing.

    `loaded` is a :class:`~superneuron_ros.vlm.loading.LoadedModel` (its family and processor).
    Raises ProfileMismatchError for profiles of different sizes, or for a size this model's
    processor cannot take (a fixed-input family, a size no vision side sets). For a change of
    the loaded profiles, pass every profile that will be loaded after it.
    """
    size = profile_image_size(profiles)
    try:
        check_image_size(loaded.family, loaded.processor.image_processor, size)
    except VisionSideError as exc:
        names = ', '.join(repr(p.name) for p in profiles)
        raise ProfileMismatchError(f'profile(s) {names} were calibrated at {_size_text(size)}, '
                                   f'which this model cannot be set to: {exc}') from None
    return size


def apply_profile_image_size(loaded: Any, profiles: Sequence[Profile]) -> tuple[int, int] | None:
    """
    Set a loaded model's processor to the resolution its profiles record; return that size.

    Checked first as :func:`check_profile_image_size` (nothing changes on an error); None puts
    the processor back to its own default.
    """
    size = check_profile_image_size(loaded, profiles)
    apply_image_size(loaded.family, loaded.processor.image_processor, size)
    return size
