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
The profiles parameter at run time: a change is applied to the loaded model, or refused.

A change of ``profiles`` while a model is loaded is applied inside the parameter's validate
step, all at once or not at all: the folders newly named are loaded and checked as configure
checks them (and must fit within the loaded layers), tasks whose folder is no longer named are
unloaded. The change is refused, with the reason as the parameter's failure reason, when a
profile does not load or does not fit, or when it would unload a task that a standing task
uses. So the parameter always equals what the node serves.
"""

from pathlib import Path
from typing import Any, Sequence

from superneuron_ros.errors import SuperneuronError
from superneuron_ros.node.model import ModelSlot
from superneuron_ros.node.params import (NodeSettings, ParameterError, StandingTask,
                                         updated_settings)


def standing_name(task: StandingTask) -> str:
    """Return a standing task as written in the parameter: TASK@CAMERA or TASK@CAMERA:RATE."""
    rate = f':{task.rate_hz:g}' if task.rate_hz > 0 else ''
    return f'{task.task}@{task.camera}{rate}'


def validate_change(settings: NodeSettings, params: Sequence[Any], model: ModelSlot) -> str:
    """
    Check a parameter change, applying a profiles change to `model`; return '' or the reason.

    Standing tasks must name loaded tasks when standing_tasks itself changes; a profiles change
    must not unload a task a standing task uses.
    """
    try:
        updated = updated_settings(settings, params)
    except ParameterError as exc:
        return str(exc)
    names = {p.name for p in params}
    before = set(model.tasks)

    def check(after: list[str]) -> None:
        lost = [standing_name(t) for t in updated.standing_tasks if t.task not in after
                and (t.task in before or 'standing_tasks' in names)]
        if lost:
            raise ParameterError(f'standing tasks {lost} would name task(s) that are not '
                                 f'loaded (loaded then: {sorted(after)}); change standing_tasks '
                                 'first, or in the same call')

    if 'profiles' in names and model.report.phase == 'loading':
        return 'the model is loading; set profiles again once the node is configured'
    if 'profiles' in names and model.loaded:
        try:
            added, removed = model.set_profiles(updated.profiles, check)
        except SuperneuronError as exc:
            return f'profiles not changed: {exc}'
        if added or removed:
            return ''  # check() has seen the standing tasks against the new task list
    if 'standing_tasks' in names and before:
        try:
            check(sorted(before))
        except ParameterError as exc:
            return str(exc)
    return ''


def with_profile(entries: Sequence[str], path: str | Path) -> list[str]:
    """Return the profiles entries with `path` appended unless an entry already names it."""
    from superneuron_ros.method.profiles import find_profiles
    target = Path(path).resolve()
    try:
        named = {found.resolve() for found in find_profiles(list(entries))} if entries else set()
    except SuperneuronError:
        named = set()  # a stale entry: appending still lets the change report it
    return list(entries) + ([] if target in named else [str(path)])
