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
The node's model slot: the core Runtime behind one lock, loaded and released with the lifecycle.

The Runtime is not thread-safe, so every call goes through the slot, which holds the lock:
:meth:`ModelSlot.answer`, :meth:`ModelSlot.run` (any function of the runtime, e.g. one capture
batch of a calibration, so that answers interleave between batches) and the run-time profile
changes (:meth:`ModelSlot.change_profiles`). The slot also keeps the :class:`ModelReport` that
diagnostics publish.
"""

from pathlib import Path
import threading
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from superneuron_ros.errors import ProfileError, SuperneuronError
from superneuron_ros.node.diagnostics import ModelReport
from superneuron_ros.node.params import NodeSettings


T = TypeVar('T')


class ModelNotLoadedError(SuperneuronError):
    """A request arrived while no model is loaded."""


def load_runtime(load_config: Any, profiles: Sequence[str], max_exit_layer: int = -1) -> Any:
    """Load the core Runtime (imported here, so that torch loads with the model, not the node)."""
    from superneuron_ros.runtime.facade import Runtime
    return Runtime.load(load_config, profiles, max_exit_layer)


class ModelSlot:
    """Holds at most one Runtime; thread-safe."""

    def __init__(self, loader: Callable[[Any, Sequence[str]], Any] = load_runtime) -> None:
        """
        Use `loader(load_config, profile_paths)` to build runtimes (Runtime.load by default).

        With the max_exit_layer parameter set (>= 0) it is passed as a third argument.
        """
        self.lock = threading.Lock()
        self.report = ModelReport()
        self._loader = loader
        self._runtime = None

    @property
    def loaded(self) -> bool:
        """Whether a runtime is loaded."""
        return self._runtime is not None

    @property
    def tasks(self) -> dict:
        """Return the loaded tasks by name (core TaskInfo), in load order; empty if none."""
        runtime = self._runtime
        return dict(runtime.tasks) if runtime is not None else {}

    def load(self, settings: NodeSettings) -> None:
        """Load the model and profiles named by `settings`; raise SuperneuronError on failure."""
        self.release()
        self.report = ModelReport(
            lifecycle_state=self.report.lifecycle_state, phase='loading',
            model_path=settings.model_path, quantization=settings.quantization,
            device=settings.device, dtype=settings.dtype)
        try:
            if not settings.profiles and settings.max_exit_layer < 0:
                raise ProfileError('the profiles parameter is empty; set it to profile folders '
                                   'made by `superneuron calibrate`, or set max_exit_layer to '
                                   'load the model for profiles taught later')
            extra = (settings.max_exit_layer,) if settings.max_exit_layer >= 0 else ()
            runtime = self._loader(settings.load_config(), list(settings.profiles), *extra)
        except Exception as exc:
            self.mark_failed(exc)
            raise
        loaded = getattr(runtime, 'loaded', None)
        selftest = runtime.selftest
        self.report.phase = 'ready'
        self.report.device = str(getattr(loaded, 'device', settings.device))
        self.report.dtype = str(getattr(loaded, 'dtype', settings.dtype)).replace('torch.', '')
        self.report.selftest_ok = bool(selftest.ok)
        self.report.selftest_message = str(selftest.message)
        self._update_report(runtime)
        with self.lock:
            self._runtime = runtime

    def _update_report(self, runtime: Any) -> None:
        self.report.exit_layer = int(runtime.exit_layer)
        self.report.tasks = tuple(runtime.tasks)
        self.report.overrides = tuple(getattr(runtime, 'warnings', ()))

    def mark_failed(self, exc: Exception) -> None:
        """Record that configuring failed before or while loading, for diagnostics."""
        self.report.phase = 'failed'
        self.report.error = str(exc) or type(exc).__name__
        self.report.error_kind = type(exc).__name__

    def answer(self, image: np.ndarray, task_names: Sequence[str]) -> Any:
        """Answer `task_names` about an (H, W, 3) uint8 RGB image; serialised by the lock."""
        return self.run(lambda runtime: runtime.answer(image, list(task_names)))

    def run(self, fn: Callable[[Any], T]) -> T:
        """Return `fn(runtime)`, called under the lock; ModelNotLoadedError if none is loaded."""
        with self.lock:
            if self._runtime is None:
                raise ModelNotLoadedError('no model is loaded; configure and activate the node '
                                          '(see its diagnostics for why loading failed)')
            return fn(self._runtime)

    def change_profiles(self, add: Sequence[str] = (), remove: Sequence[str] = (),
                        check: Callable[[list[str]], None] | None = None) -> list:
        """
        Add profile folders and remove tasks at once, without reloading the model.

        `check(task_names_after)` may raise to refuse the change. All or nothing: on any error
        (ProfileError, UnknownTaskError, or what `check` raises) nothing changes. Returns the
        added tasks (core TaskInfo).
        """
        return self.run(lambda runtime: self._change(runtime, add, remove, check))

    def _change(self, runtime: Any, add: Sequence[Any], remove: Sequence[str],
                check: Callable[[list[str]], None] | None) -> list:
        prepared = runtime.prepare_change(list(add), list(remove))
        if check is not None:
            check(prepared.tasks_after(list(runtime.tasks)))
        added = runtime.commit(prepared)
        self._update_report(runtime)
        return added

    def set_profiles(self, entries: Sequence[str],
                     check: Callable[[list[str]], None] | None = None) -> tuple[list, list]:
        """
        Make the loaded profiles those that `entries` (the profiles parameter) names.

        Profile folders not loaded yet are added, loaded tasks whose folder is no longer named are
        removed, all at once or not at all (as :meth:`change_profiles`). Returns (added tasks,
        removed task names).
        """
        from superneuron_ros.method.profiles import find_profiles
        wanted = find_profiles(list(entries)) if entries else []
        wanted_resolved = {path.resolve() for path in wanted}

        def change(runtime: Any) -> tuple[list, list]:
            loaded = {Path(info.profile_path).resolve(): name
                      for name, info in runtime.tasks.items()}
            add = [path for path in wanted if path.resolve() not in loaded]
            remove = [name for path, name in loaded.items() if path not in wanted_resolved]
            if not add and not remove:
                return [], []
            return self._change(runtime, add, remove, check), remove
        return self.run(change)

    def add_profiles(self, paths: Sequence[str]) -> list:
        """Add profiles (all or nothing, see Runtime.add_profiles); return the added tasks."""
        if not paths:
            raise ProfileError('no profile paths given; pass profile folders made by '
                               '`superneuron calibrate`')
        return self.change_profiles(add=paths)

    def remove_tasks(self, names: Sequence[str]) -> None:
        """Remove loaded tasks (UnknownTaskError, and nothing removed, for an unknown name)."""
        self.change_profiles(remove=names)

    def release(self) -> None:
        """Close the runtime and free its memory; waits for a running answer to finish."""
        with self.lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
            self.report = ModelReport(lifecycle_state=self.report.lifecycle_state,
                                      phase='released', model_path=self.report.model_path,
                                      quantization=self.report.quantization)
