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
Load a vision-language model from a local folder, quantized, optionally truncated at a layer.

Truncation is one named operation, :func:`load_model` with ``exit_layer=L``: the decoder is built
with layers ``0..L`` only and without the LM head, so the checkpoint tensors of deeper layers and
of the head are never read (safetensors files are memory-mapped; only matched tensors are
materialised).
"""

import contextlib
from dataclasses import dataclass, field, replace
import gc
import logging
import os
from pathlib import Path
import types
from typing import Any

from superneuron_ros.errors import DeviceError, LayerRangeError, ModelLoadError
from superneuron_ros.vlm.config import DTYPE_NAMES, LoadConfig, TORCHAO
from superneuron_ros.vlm.families import Family, family_for
from superneuron_ros.vlm.quantization import compute_dtype_for, quantization_config
from superneuron_ros.vlm.quantization import quiet_backend_notices
import torch
from torch import nn

LOG = logging.getLogger(__name__)

DTYPES = {'auto': None, 'float32': torch.float32, 'float16': torch.float16,
          'bfloat16': torch.bfloat16}
assert tuple(DTYPES) == DTYPE_NAMES
PROCESSOR_FILES = ('processor_config.json', 'preprocessor_config.json', 'tokenizer.json',
                   'tokenizer_config.json')


@dataclass
class LoadedModel:
    """A loaded model with what the rest of the core needs to know about it."""

    model: nn.Module  # base model when truncated, ForConditionalGeneration when full
    processor: Any
    family: Family
    config: Any  # the checkpoint's config (full depth)
    load_config: LoadConfig
    num_layers: int  # decoder depth of the checkpoint
    device: torch.device
    dtype: torch.dtype
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_truncated(self) -> bool:
        """Whether the model was built with layers 0..exit_layer only and no LM head."""
        return self.load_config.exit_layer is not None

    @property
    def loaded_layers(self) -> int:
        """Return the number of decoder layers resident in memory."""
        return len(self.family.decoder_layers(self.base_model))

    @property
    def base_model(self) -> nn.Module:
        """Return the model without LM head (vision tower, projector, language model)."""
        return self.model if self.is_truncated else self.model.model

    def resident_parameters(self) -> int:
        """Count the logical parameters resident in memory (4-bit weights count unpacked)."""
        return sum(_logical_numel(p) for p in self.model.parameters())

    def resident_bytes(self) -> int:
        """Bytes of parameter and buffer storage resident in memory."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)


def _logical_numel(param: torch.Tensor) -> int:
    """Return the unquantized element count of a parameter (bitsandbytes packs 4-bit weights)."""
    quant_state = getattr(param, 'quant_state', None)
    if quant_state is not None and getattr(quant_state, 'shape', None) is not None:
        return int(torch.Size(quant_state.shape).numel())
    return param.numel()


def resolve_device(device: str) -> torch.device:
    """Map 'auto' / 'cuda' / 'cpu' to a torch device, refusing CUDA where there is none."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise DeviceError(f'device {device!r} was asked for but CUDA is not available '
                          f'(torch {torch.__version__}); use device "cpu" or "auto", or install '
                          'a CUDA build of PyTorch')
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """
    Whether `device` computes in bfloat16 natively (CUDA compute capability 8.0 or newer).

    ``torch.cuda.is_bf16_supported()`` is not the test: it is True through emulation on older
    GPUs, and it asks the current device, not `device`.
    """
    if device.type != 'cuda':
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_dtype(dtype: str, device: torch.device, quantization: str = 'none') -> torch.dtype:
    """
    Return the compute dtype; 'auto' picks float32 on CPU, bfloat16 or float16 on CUDA.

    bfloat16 on CUDA only where the GPU has it natively (Ampere and newer, Jetson Orin included);
    torchao int4 computes in bfloat16 on every device.
    """
    if DTYPES[dtype] is not None:
        return compute_dtype_for(quantization, DTYPES[dtype])
    if quantization in TORCHAO:
        return torch.bfloat16
    if device.type == 'cuda':
        return torch.bfloat16 if native_bf16(device) else torch.float16
    return torch.float32


def check_loading_info(info: dict[str, Any], folder: Path) -> None:
    """
    Raise ModelLoadError naming the weights the checkpoint lacks or has in another shape.

    Only the weights of the model being built count: tensors in the checkpoint the model does not
    use (deeper layers and the LM head of a truncated load) are the one accepted difference.
    """
    missing = sorted(info.get('missing_keys') or ())
    mismatched = sorted(str(entry[0] if isinstance(entry, (tuple, list)) else entry)
                        for entry in info.get('mismatched_keys') or ())
    errors = [str(message) for message in info.get('error_msgs') or ()]
    if not (missing or mismatched or errors):
        return
    parts = []
    for what, names in (('missing', missing), ('of the wrong shape', mismatched),
                        ('failing to load', errors)):
        if names:
            shown = ', '.join(names[:8]) + (f' and {len(names) - 8} more' if len(names) > 8
                                            else '')
            parts.append(f'{len(names)} {what}: {shown}')
    raise ModelLoadError(
        f'the checkpoint in {folder} does not match its config.json: weights {"; ".join(parts)}. '
        'A model with those would compute with random values; use the complete, unmodified '
        'checkpoint (re-download or re-export it with save_pretrained)')


def check_model_folder(path: str | os.PathLike) -> Path:
    """Return the folder as a Path, or raise ModelLoadError saying what is missing."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f'model folder {str(folder)!r} does not exist; point model_path at a local Hugging '
            'Face model folder (config.json, *.safetensors and the processor files). Models are '
            'never downloaded.')
    if not (folder / 'config.json').is_file():
        raise ModelLoadError(f'{folder} has no config.json: it is not a Hugging Face model folder')
    if not list(folder.glob('*.safetensors')):
        raise ModelLoadError(
            f'{folder} has no *.safetensors weights; pickle checkpoints (*.bin) are refused, '
            'convert them with save_pretrained(safe_serialization=True)')
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise ModelLoadError(f'{folder} has no processor or tokenizer files '
                             f'(one of {", ".join(PROCESSOR_FILES)})')
    return folder


def read_config(folder: Path) -> Any:
    """Read a model folder's config (local files only, no remote code)."""
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except ValueError as exc:  # unknown model_type
        raise ModelLoadError(f'cannot read {folder / "config.json"}: {exc}') from exc


def truncate_config(config: Any, family: Family, exit_layer: int) -> Any:
    """Return a copy of `config` whose decoder keeps layers 0..exit_layer only."""
    config = config.__class__.from_dict(config.to_dict())
    text = family.text_config(config)
    depth = text.num_hidden_layers
    for name, value in list(vars(text).items()):  # per-layer lists, e.g. layer_types
        if isinstance(value, (list, tuple)) and len(value) == depth and name != 'architectures':
            setattr(text, name, type(value)(value[:exit_layer + 1]))
    text.num_hidden_layers = exit_layer + 1
    return config


def image_only_processor_class(model_type: str) -> type:
    """
    Return the family's processor class without its video processor.

    In transformers 5 the processors of Qwen2/2.5/3-VL, LLaVA-OneVision and SmolVLM require a video
    processor, which requires torchvision. Images never need it, so where torchvision is missing
    the processor is built from its image processor and tokenizer alone, through the same class.
    """
    import transformers
    from transformers import ProcessorMixin
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    base = getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type])
    if 'video_processor' not in base.get_attributes():
        return base  # nothing to strip (LLaVA)
    attributes = [name for name in base.get_attributes() if name != 'video_processor']

    # The same __init__ code (transformers reads its argument names from the code object), with
    # every positional argument defaulting to None so that no video processor is needed.
    init = base.__init__
    code = init.__code__
    defaults = init.__defaults__ or ()
    defaults = (None,) * (code.co_argcount - 1 - len(defaults)) + defaults
    __init__ = types.FunctionType(code, init.__globals__, init.__name__, defaults,
                                  init.__closure__)
    __init__.__kwdefaults__ = init.__kwdefaults__

    def apply_chat_template(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The generic template path; some families' overrides read video processor defaults.
        return ProcessorMixin.apply_chat_template(self, *args, **kwargs)

    return type(f'ImageOnly{base.__name__}', (base,),
                {'get_attributes': classmethod(lambda cls: list(attributes)),
                 '__init__': __init__, 'apply_chat_template': apply_chat_template})


def load_processor(folder: Path, model_type: str | None = None) -> Any:
    """Load the model's processor (tokenizer, image processor, chat template) from the folder."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available
    kwargs = {'local_files_only': True, 'trust_remote_code': False}
    try:
        if model_type is not None and not is_torchvision_available():
            try:
                processor_class = image_only_processor_class(model_type)
                processor = processor_class.from_pretrained(folder, **kwargs)
            except (KeyError, AttributeError):  # a family without a processor class of its own
                processor = AutoProcessor.from_pretrained(folder, **kwargs)
        else:
            processor = AutoProcessor.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise ModelLoadError(f'cannot load the processor from {folder}: {exc}') from exc
    processor.tokenizer.padding_side = 'right'  # real positions match the unpadded sample
    return processor


def load_model(load_config: LoadConfig) -> LoadedModel:
    """Load a model (full, or truncated at `load_config.exit_layer`) and its processor."""
    quiet_backend_notices()
    from transformers import AutoModel, AutoModelForImageTextToText
    folder = check_model_folder(load_config.model_path)
    config = read_config(folder)
    family = family_for(config.model_type)
    num_layers = family.text_config(config).num_hidden_layers
    exit_layer = load_config.exit_layer
    if exit_layer is not None and not 0 <= exit_layer < num_layers:
        raise LayerRangeError(f'exit layer {exit_layer} is out of range: {folder.name} has '
                              f'{num_layers} decoder layers (valid: 0..{num_layers - 1})')
    device = resolve_device(load_config.device)
    dtype = resolve_dtype(load_config.dtype, device, load_config.quantization)
    kwargs: dict[str, Any] = {'local_files_only': True, 'trust_remote_code': False,
                              'use_safetensors': True, 'dtype': dtype,
                              'device_map': {'': str(device)}, 'output_loading_info': True,
                              # report wrong shapes by name below instead of a bare RuntimeError
                              'ignore_mismatched_sizes': True}
    qconfig = quantization_config(load_config.quantization, dtype, device,
                                  load_config.quantize_modules)
    if qconfig is not None:
        kwargs['quantization_config'] = qconfig
    if exit_layer is None:
        model_class, model_config = AutoModelForImageTextToText, config
    else:
        model_class, model_config = AutoModel, truncate_config(config, family, exit_layer)
    LOG.info('loading %s (%s) from %s: %s (%s), %s on %s', family.display_name,
             'layers 0..%d' % exit_layer if exit_layer is not None else 'full model',
             folder, load_config.quantization, load_config.quantized_modules,
             str(dtype).replace('torch.', ''), device)
    try:
        with _quiet_transformers():
            model, info = model_class.from_pretrained(folder, config=model_config, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f'cannot load the weights from {folder}: {exc}') from exc
    try:
        check_loading_info(info, folder)
    except ModelLoadError:
        model = None  # noqa: F841 - drop the weights before the error propagates
        release_memory(device)
        raise
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, processor=load_processor(folder, config.model_type),
                       family=family,
                       config=config, load_config=load_config, num_layers=num_layers,
                       device=device, dtype=dtype)


def with_exit_layer(load_config: LoadConfig, exit_layer: int | None) -> LoadConfig:
    """Return `load_config` with another exit layer (None: the full model)."""
    return replace(load_config, exit_layer=exit_layer)


class _quiet_transformers:
    """Silence transformers' load report and progress bars (a truncated load is on purpose)."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging
        self._level = hf_logging.get_verbosity()
        self._bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity(self._level)
        if self._bars:
            hf_logging.enable_progress_bar()


def device_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """
    Make `device` the current CUDA device of the calling thread inside the block.

    The current CUDA device is per thread: a model loaded on ``cuda:1`` in one thread and used
    from another would otherwise run that thread's kernels and allocations against ``cuda:0``.
    """
    if device.type == 'cuda':
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def release_memory(device: torch.device) -> None:
    """Collect a model the caller has just dropped and return its GPU memory."""
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
