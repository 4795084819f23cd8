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
The engine: prompts, preprocessing, the shared vision pass, activations at the answer position.

An :class:`Engine` wraps a :class:`~superneuron_ros.vlm.loading.LoadedModel`. It never runs an LM
head on the super-neuron path and never decodes; the full model's own answers (for baselines) are
available only when the full model was loaded.
"""

from dataclasses import dataclass
import time
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image
from superneuron_ros.errors import ImageError, SuperneuronError
from superneuron_ros.vlm.capture import capture_activations, last_positions, Site, StopForward
from superneuron_ros.vlm.loading import LoadedModel
import torch


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent in each stage of one answer."""

    preprocess_ms: float = 0.0
    vision_ms: float = 0.0
    decoder_ms: float = 0.0
    classify_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """Sum of the stages."""
        return self.preprocess_ms + self.vision_ms + self.decoder_ms + self.classify_ms


def check_image(image: Any) -> np.ndarray:
    """Return `image` if it is an (H, W, 3) uint8 RGB array, else raise ImageError."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f'an image must be a numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f'an image must have shape (height, width, 3), got {image.shape}')
    if image.dtype != np.uint8:
        raise ImageError(f'an image must be uint8, got {image.dtype}')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f'an image must not be empty, got {image.shape}')
    return image


class Engine:
    """Runs a (truncated) VLM on images and prompts and reads scalar activations."""

    def __init__(self, loaded: LoadedModel) -> None:
        """Wrap a loaded model."""
        self.loaded = loaded
        self.family = loaded.family
        self.processor = loaded.processor
        self.device = loaded.device
        self.layers = self.family.decoder_layers(loaded.base_model)

    @property
    def num_loaded_layers(self) -> int:
        """Return the number of decoder layers resident (exit layer + 1 when truncated)."""
        return len(self.layers)

    def render_prompt(self, question: str) -> str:
        """Render a question through the chat template with the generation prompt appended."""
        messages = [{'role': 'user', 'content': [
            {'type': 'image'}, {'type': 'text', 'text': question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def preprocess(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> Any:
        """Run the processor on one image per prompt; return tensors on the model's device."""
        if len(images) != len(prompts) or not prompts:
            raise ValueError(f'need one image per prompt, got {len(images)} and {len(prompts)}')
        pil = [Image.fromarray(check_image(image)) for image in images]
        batch = self.processor(images=[[p] for p in pil] if self._nested_images else pil,
                               text=list(prompts), return_tensors='pt', padding=True)
        return batch.to(self.device)

    @property
    def _nested_images(self) -> bool:
        """Tell whether the processor takes a list of images per prompt (SmolVLM)."""
        return self.family.name == 'smolvlm'

    def _sync(self) -> float:
        """Wait for queued device work and return a monotonic time in seconds."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _stop_layer(self, sites: Mapping[Site, Any]) -> int | None:
        """Deepest layer needed, when it is shallower than the loaded depth."""
        deepest = max(layer for layer, _ in sites)
        return deepest if deepest < self.num_loaded_layers - 1 else None

    def _forward(self, inputs: Mapping[str, Any], sites: Mapping[Site, torch.Tensor | None],
                 **extra: Any) -> dict[Site, torch.Tensor]:
        """Run the base model with capture hooks and return the captured [B, n] tensors."""
        sites = {key: (None if idx is None else torch.as_tensor(idx, device=self.device))
                 for key, idx in sites.items()}
        with capture_activations(self.layers, sites, self._stop_layer(sites)) as capture:
            capture.positions = last_positions(inputs['attention_mask'])
            try:
                self.loaded.base_model(**inputs, **extra, use_cache=False)
            except StopForward:
                pass
        return capture.values

    @torch.inference_mode()
    def capture(self, images: Sequence[np.ndarray], prompts: Sequence[str],
                sites: Mapping[Site, Any]) -> dict[Site, torch.Tensor]:
        """
        Read `sites` for a batch where each prompt has its own image.

        `sites` maps (layer, site) to the coordinates to keep (None: all). Returns float32 CPU
        tensors of shape [batch, n] in the order of the given coordinates.
        """
        return self._forward(self.preprocess(images, prompts), sites)

    @torch.inference_mode()
    def capture_shared(self, image: np.ndarray, prompts: Sequence[str],
                       sites: Mapping[Site, Any]) -> tuple[dict[Site, torch.Tensor], StageTimes]:
        """Read `sites` for several prompts about one image, running the vision tower once."""
        start = self._sync()
        inputs = self.preprocess([image] * len(prompts), prompts)
        preprocessed = self._sync()
        features = self.family.image_features(self.loaded.base_model, inputs)
        features = self.family.repeat_features(features, len(prompts))
        seen = self._sync()
        decoder_inputs = {'input_ids': inputs['input_ids'],
                          'attention_mask': inputs['attention_mask'],
                          **self.family.decoder_kwargs(inputs)}
        values = self._forward(decoder_inputs, sites, mm_encoder_outputs={'image': features})
        done = self._sync()
        times = StageTimes(preprocess_ms=1e3 * (preprocessed - start),
                           vision_ms=1e3 * (seen - preprocessed),
                           decoder_ms=1e3 * (done - seen))
        return values, times

    def _require_full(self, what: str) -> None:
        if self.loaded.is_truncated:
            raise SuperneuronError(f'{what} needs the full model with its LM head; this engine '
                                   'holds a truncated model (load with exit_layer=None)')

    @torch.inference_mode()
    def first_token_logits(self, images: Sequence[np.ndarray],
                           prompts: Sequence[str]) -> torch.Tensor:
        """Return the full model's next-token logits at each prompt's last position [B, V]."""
        self._require_full('first_token_logits')
        inputs = self.preprocess(images, prompts)
        hidden = self.loaded.base_model(**inputs, use_cache=False).last_hidden_state  # [B, T, D]
        positions = last_positions(inputs['attention_mask'])
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]  # [B, D]
        return self.loaded.model.lm_head(last).float().cpu()

    @torch.inference_mode()
    def generate(self, image: np.ndarray, prompt: str, max_new_tokens: int = 8) -> str:
        """Greedily generate the full model's answer to one prompt about one image."""
        self._require_full('generate')
        inputs = self.preprocess([image], [prompt])
        tokenizer = self.processor.tokenizer
        output = self.loaded.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new_tokens = output[0, inputs['input_ids'].shape[1]:]
        return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
