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

The Runtime is not thread-safe, so every call goes through :meth:`ModelSlot.answer`, which holds
the lock. The slot also keeps the :class:`ModelReport` that diagnostics publish.
"""

import threading
from typing import Any, Callable, Sequence

import numpy as np
from superneuron_ros.errors import ProfileError, SuperneuronError
from superneuron_ros.node.diagnostics import ModelReport
from superneuron_ros.node.params import NodeSettings


class ModelNotLoadedError(SuperneuronError):
    """A request arrived while no model is loaded."""


def load_runtime(load_config: Any, profiles: Sequence[str]) -> Any:
    """Load the core Runtime (imported here, so that torch loads with the model, not the node)."""
    from superneuron_ros.runtime.facade import Runtime
    return Runtime.load(load_config, profiles)


class ModelSlot:
    """Holds at most one Runtime; thread-safe."""

    def __init__(self, loader: Callable[[Any, Sequence[str]], Any] = load_runtime) -> None:
        """Use `loader(load_config, profile_paths)` to build runtimes (Runtime.load by default)."""
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
            if not settings.profiles:
                raise ProfileError('the profiles parameter is empty; set it to profile folders '
                                   'made by `superneuron calibrate`')
            runtime = self._loader(settings.load_config(), list(settings.profiles))
        except Exception as exc:
            self.mark_failed(exc)
            raise
        loaded = getattr(runtime, 'loaded', None)
        selftest = runtime.selftest
        self.report.phase = 'ready'
        self.report.device = str(getattr(loaded, 'device', settings.device))
        self.report.dtype = str(getattr(loaded, 'dtype', settings.dtype)).replace('torch.', '')
        self.report.exit_layer = int(runtime.exit_layer)
        self.report.tasks = tuple(runtime.tasks)
        self.report.selftest_ok = bool(selftest.ok)
        self.report.selftest_message = str(selftest.message)
        self.report.overrides = tuple(getattr(runtime, 'warnings', ()))
        with self.lock:
            self._runtime = runtime

    def mark_failed(self, exc: Exception) -> None:
        """Record that configuring failed before or while loading, for diagnostics."""
        self.report.phase = 'failed'
        self.report.error = str(exc) or type(exc).__name__
        self.report.error_kind = type(exc).__name__

    def answer(self, image: np.ndarray, task_names: Sequence[str]) -> Any:
        """Answer `task_names` about an (H, W, 3) uint8 RGB image; serialised by the lock."""
        with self.lock:
            if self._runtime is None:
                raise ModelNotLoadedError('no model is loaded; configure and activate the node '
                                          '(see its diagnostics for why loading failed)')
            return self._runtime.answer(image, list(task_names))

    def release(self) -> None:
        """Close the runtime and free its memory; waits for a running answer to finish."""
        with self.lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
            self.report = ModelReport(lifecycle_state=self.report.lifecycle_state,
                                      phase='released', model_path=self.report.model_path,
                                      quantization=self.report.quantization)
