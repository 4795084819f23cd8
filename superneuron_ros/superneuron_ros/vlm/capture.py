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

Only the value at one position per sample is kept (the last real prompt position, whose logits
predict the first generated token), and optionally only selected coordinates of it.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from superneuron_ros.errors import LayerRangeError
import torch
from torch import nn

SITES = ('residual', 'mlp')

Site = tuple[int, str]  # (layer, site name)


class StopForward(Exception):
    """Raised by a hook to end the forward pass once the deepest requested layer has run."""


@dataclass
class Capture:
    """What a capture context collected: per (layer, site), a [batch, n] tensor."""

    positions: torch.Tensor | None = None  # [B] long, set before the forward pass
    values: dict[Site, torch.Tensor] = field(default_factory=dict)


def check_sites(sites: Mapping[Site, object], num_layers: int) -> None:
    """Raise LayerRangeError or ValueError for sites outside the loaded layers or unknown names."""
    for layer, site in sites:
        if site not in SITES:
            raise ValueError(f'unknown site {site!r}; valid sites: {SITES}')
        if not 0 <= layer < num_layers:
            raise LayerRangeError(f'layer {layer} is not loaded (valid: 0..{num_layers - 1})')


def _pick(hidden: torch.Tensor, positions: torch.Tensor,
          indices: torch.Tensor | None) -> torch.Tensor:
    """Gather each sample's row at its position, then the selected coordinates."""
    rows = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]  # [B, D]
    if indices is not None:
        rows = rows.index_select(1, indices)  # [B, n]
    return rows.detach().float().cpu()


@contextmanager
def capture_activations(layers: nn.ModuleList,
                        sites: Mapping[Site, torch.Tensor | None],
                        stop_after: int | None = None) -> Iterator[Capture]:
    """
    Record `sites` (index tensor or None for all) of `layers` at `Capture.positions`.

    With `stop_after`, the layer of that index raises :class:`StopForward` after its hooks ran,
    so deeper layers are skipped (the caller catches it). Hooks are removed on exit, always.
    """
    check_sites(sites, len(layers))
    capture = Capture()
    handles = []

    def residual_hook(layer_index: int, indices: torch.Tensor | None):
        def hook(module: nn.Module, args: object, output: object) -> None:
            hidden = output[0] if isinstance(output, tuple) else output  # [B, T, D]
            capture.values[(layer_index, 'residual')] = _pick(hidden, capture.positions, indices)
        return hook

    def mlp_hook(layer_index: int, indices: torch.Tensor | None):
        def hook(module: nn.Module, args: tuple) -> None:
            capture.values[(layer_index, 'mlp')] = _pick(args[0], capture.positions, indices)
        return hook

    def stop_hook(module: nn.Module, args: object, output: object) -> None:
        raise StopForward()

    try:
        for (layer_index, site), indices in sorted(sites.items(), key=lambda kv: kv[0]):
            layer = layers[layer_index]
            if site == 'residual':
                handles.append(layer.register_forward_hook(residual_hook(layer_index, indices)))
            else:
                handles.append(layer.mlp.down_proj.register_forward_pre_hook(
                    mlp_hook(layer_index, indices)))
        if stop_after is not None:
            # Registered last on that layer, so it runs after the layer's capture hooks.
            handles.append(layers[stop_after].register_forward_hook(stop_hook))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return each sample's last real (unpadded) position; works for left and right padding."""
    mask = attention_mask.long()  # [B, T]
    length = mask.shape[1]
    return length - 1 - mask.flip(1).argmax(dim=1)  # [B]
