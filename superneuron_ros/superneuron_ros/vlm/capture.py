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
Activation capture at the last prompt position, in a context manager that always unhooks.

Two sites per decoder layer are readable:

- ``residual``: the hidden state a decoder layer outputs (size ``hidden_size``);
- ``mlp``: the input of that layer's ``mlp.down_proj``, the MLP's inner activations (size
  ``intermediate_size``).

Only the value at one position per prompt is kept (the last real prompt position, whose logits
predict the first generated token), and optionally only selected coordinates of it. A prompt's
position is a (row, column) pair: a batch row and its last real token, or the row of a packed
sequence (:mod:`superneuron_ros.vlm.prefix`) and the prompt's last token in it.

The forward pass stops after the deepest layer asked for (``stop_after``), and a watcher may be
called after each of some layers with what was captured so far; it ends the pass early by
returning True (the anytime exit).

Besides the decoder sites, the pseudo-site :data:`VISION` is the projector's output (the image
features the decoder receives) averaged over each image's tokens, read in the same pass by
:func:`capture_image_features` (the "vision only" baseline of calibration).
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from superneuron_ros.errors import LayerRangeError
import torch
from torch import nn

SITES = ('residual', 'mlp')

Site = tuple[int, str]  # (layer, site name)
VISION: Site = (-1, 'vision')  # the projector output averaged over the image tokens, [N, hidden]


class StopForward(Exception):
    """Raised by a hook to end the forward pass once the deepest requested layer has run."""


Watcher = Callable[[int, Mapping[Site, torch.Tensor]], bool]  # (layer, values so far) -> stop


@dataclass
class Capture:
    """What a capture context collected: per (layer, site), a [prompts, n] tensor."""

    positions: torch.Tensor | None = None  # [K] long, the column of each prompt; set before
    rows: torch.Tensor | None = None  # [K] long, the row of each prompt (None: row k is prompt k)
    values: dict[Site, torch.Tensor] = field(default_factory=dict)
    layers_run: int = 0  # decoder layers whose forward completed


def check_sites(sites: Mapping[Site, object], num_layers: int) -> None:
    """Raise LayerRangeError or ValueError for sites outside the loaded layers or unknown names."""
    for layer, site in sites:
        if site not in SITES:
            raise ValueError(f'unknown site {site!r}; valid sites: {SITES}')
        if not 0 <= layer < num_layers:
            raise LayerRangeError(f'layer {layer} is not loaded (valid: 0..{num_layers - 1})')


def _pick(hidden: torch.Tensor, capture: Capture, indices: torch.Tensor | None) -> torch.Tensor:
    """Gather each prompt's vector at its (row, position), then the selected coordinates."""
    batch_rows = capture.rows
    if batch_rows is None:
        batch_rows = torch.arange(hidden.shape[0], device=hidden.device)
    rows = hidden[batch_rows, capture.positions]  # [K, D]
    if indices is not None:
        rows = rows.index_select(1, indices)  # [B, n]
    return rows.detach().float().cpu()


@contextmanager
def capture_activations(layers: nn.ModuleList,
                        sites: Mapping[Site, torch.Tensor | None],
                        stop_after: int | None = None,
                        watch: Mapping[int, Watcher] | None = None) -> Iterator[Capture]:
    """
    Record `sites` (index tensor or None for all) of `layers` at each prompt's position.

    With `stop_after`, the layer of that index raises :class:`StopForward` after its hooks ran,
    so deeper layers are skipped (the caller catches it). `watch` maps layers to a watcher called
    after that layer's capture hooks with the values captured so far; a watcher returning True
    stops the pass there. Hooks are removed on exit, always.
    """
    check_sites(sites, len(layers))
    for layer in list(watch or {}) + ([] if stop_after is None else [stop_after]):
        if not 0 <= layer < len(layers):
            raise LayerRangeError(f'layer {layer} is not loaded (valid: 0..{len(layers) - 1})')
    capture = Capture()
    handles = []

    def residual_hook(layer_index: int, indices: torch.Tensor | None):
        def hook(module: nn.Module, args: object, output: object) -> None:
            hidden = output[0] if isinstance(output, tuple) else output  # [B, T, D]
            capture.values[(layer_index, 'residual')] = _pick(hidden, capture, indices)
        return hook

    def mlp_hook(layer_index: int, indices: torch.Tensor | None):
        def hook(module: nn.Module, args: tuple) -> None:
            capture.values[(layer_index, 'mlp')] = _pick(args[0], capture, indices)
        return hook

    def last_hook(layer_index: int):
        def hook(module: nn.Module, args: object, output: object) -> None:
            capture.layers_run = layer_index + 1
            watcher = (watch or {}).get(layer_index)
            done = watcher is not None and watcher(layer_index, capture.values)
            if done or layer_index == stop_after:
                raise StopForward()
        return hook

    try:
        for (layer_index, site), indices in sorted(sites.items(), key=lambda kv: kv[0]):
            layer = layers[layer_index]
            if site == 'residual':
                handles.append(layer.register_forward_hook(residual_hook(layer_index, indices)))
            else:
                handles.append(layer.mlp.down_proj.register_forward_pre_hook(
                    mlp_hook(layer_index, indices)))
        # Registered last on every layer, so it runs after that layer's capture hooks.
        for layer_index, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(last_hook(layer_index)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_image_features(base_model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """
    Record, per image, the projector output averaged over its image tokens (float32 CPU [D]).

    Wraps the base model's ``get_image_features`` for the block, so the pass that runs the vision
    tower anyway also yields its features; every supported family returns them per image in
    ``pooler_output``. The wrapper is removed on exit, always.
    """
    original = base_model.get_image_features
    means: list[torch.Tensor] = []

    def wrapped(*args: object, **kwargs: object) -> object:
        output = original(*args, **kwargs)
        for features in output.pooler_output:  # per image: [tokens, D]
            means.append(features.detach().float().mean(dim=0).cpu())
        return output

    base_model.get_image_features = wrapped
    try:
        yield means
    finally:
        del base_model.get_image_features  # the class's method again


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return each sample's last real (unpadded) position; works for left and right padding."""
    mask = attention_mask.long()  # [B, T]
    length = mask.shape[1]
    return length - 1 - mask.flip(1).argmax(dim=1)  # [B]
