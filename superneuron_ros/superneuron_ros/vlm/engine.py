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
The engine: prompts, preprocessing, the shared pass of several prompts, activations.

An :class:`Engine` wraps a :class:`~superneuron_ros.vlm.loading.LoadedModel`. It never runs an LM
head on the super-neuron path and never decodes; the full model's own answers (for baselines) are
available only when the full model was loaded.

:meth:`Engine.capture_shared` is the one pass of the super-neuron path: K prompts about one image,
the processor run once, the vision tower run once, the shared prefix of the prompts computed once
(:mod:`superneuron_ros.vlm.prefix`), and the decoder run only as deep as the call needs.
"""

from contextlib import nullcontext
from dataclasses import dataclass
import time
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image
from superneuron_ros.errors import ImageError, SuperneuronError
from superneuron_ros.vlm.capture import (capture_activations, capture_image_features,
                                         last_positions, Site, StopForward, VISION, Watcher)
from superneuron_ros.vlm.loading import LoadedModel
from superneuron_ros.vlm.prefix import expand_like, pack, Packed
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


@dataclass(frozen=True)
class SharedCapture:
    """What one shared pass read: per (layer, site) a [K, n] tensor, timings and the depth run."""

    values: dict[Site, torch.Tensor]
    times: StageTimes
    layers_run: int  # decoder layers actually run
    prefix_length: int  # tokens computed once for all prompts
    length: int  # tokens of the packed row (prefix + every prompt's own tokens)


@dataclass(frozen=True)
class Generated:
    """The full model's greedy answer: the text and how many tokens it took."""

    text: str
    new_tokens: int


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
        batch = self.processor(images=self.family.processor_images(pil), text=list(prompts),
                               return_tensors='pt', padding=True)
        return batch.to(self.device)

    def prompt_sequences(self, image: np.ndarray,
                         prompts: Sequence[str]) -> tuple[Any, list[list[int]]]:
        """
        Run the processor once on the image and return its outputs and every prompt's tokens.

        The processor sees the image with the first prompt; the other prompts are tokenised
        alone and get the same expanded image block (:func:`~superneuron_ros.vlm.prefix.
        expand_like`), so each sequence equals the processor's output for that prompt.
        """
        if not prompts:
            raise ValueError('need at least one prompt')
        inputs = self.preprocess([image], [prompts[0]])
        expanded_first = inputs['input_ids'][0].tolist()
        raw = self.processor.tokenizer(list(prompts))['input_ids']
        sequences = []
        for prompt, tokens in zip(prompts, raw):
            sequence = expand_like(raw[0], expanded_first, tokens)
            if sequence is None:  # differing text before the image: the processor's own answer
                sequence = self.preprocess([image], [prompt])['input_ids'][0].tolist()
            sequences.append(sequence)
        return inputs, sequences

    def pack_prompts(self, image: np.ndarray, prompts: Sequence[str]) -> tuple[Any, Packed]:
        """Preprocess one image once for K prompts; pack the prompts around their shared prefix."""
        inputs, sequences = self.prompt_sequences(image, prompts)
        base = self.loaded.base_model
        positions = [self.family.positions(base, sequence, inputs) for sequence in sequences]
        return inputs, pack(sequences, positions, self.loaded.dtype, self.device)

    def _sync(self) -> float:
        """Wait for queued device work and return a monotonic time in seconds."""
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _device_sites(self, sites: Mapping[Site, Any]) -> dict[Site, torch.Tensor | None]:
        def on_device(idx: Any) -> torch.Tensor | None:
            if idx is None or isinstance(idx, torch.Tensor):
                return None if idx is None else idx.to(self.device)
            return torch.tensor(np.asarray(idx, dtype=np.int64), device=self.device)

        return {key: on_device(idx) for key, idx in sites.items()}

    @torch.inference_mode()
    def capture(self, images: Sequence[np.ndarray], prompts: Sequence[str],
                sites: Mapping[Site, Any]) -> dict[Site, torch.Tensor]:
        """
        Read `sites` for a batch where each prompt has its own image (calibration).

        `sites` maps (layer, site) to the coordinates to keep (None: all). Returns float32 CPU
        tensors of shape [batch, n] in the order of the given coordinates. With the key
        :data:`~superneuron_ros.vlm.capture.VISION` (value None), the same pass also returns the
        projector output averaged over each image's tokens, [batch, hidden], under that key.
        """
        inputs = self.preprocess(images, prompts)
        vision = VISION in sites
        sites = self._device_sites({key: idx for key, idx in sites.items() if key != VISION})
        deepest = max(layer for layer, _ in sites)
        with capture_activations(self.layers, sites, deepest) as capture:
            capture.positions = last_positions(inputs['attention_mask'])
            reading = capture_image_features(self.loaded.base_model) if vision else nullcontext([])
            with reading as features:
                try:
                    self.loaded.base_model(**inputs, use_cache=False)
                except StopForward:
                    pass
        if vision:
            if len(features) != len(images):
                raise SuperneuronError(f'the vision tower returned {len(features)} feature '
                                       f'sets for {len(images)} images')
            capture.values[VISION] = torch.stack(features)
        return capture.values

    @torch.inference_mode()
    def capture_shared(self, image: np.ndarray, prompts: Sequence[str],
                       sites: Mapping[Site, Any], depth: int | None = None,
                       watch: Mapping[int, Watcher] | None = None) -> SharedCapture:
        """
        Read `sites` for K prompts about one image in one pass.

        The processor and the vision tower run once; the prompts' shared prefix is computed once.
        The decoder runs layers 0..`depth` (default: the deepest layer of `sites`; with no sites,
        every loaded layer), or fewer when a watcher of `watch` stops it (see
        :func:`~superneuron_ros.vlm.capture.capture_activations`). Values are float32 CPU
        tensors [K, n], row k for prompt k.
        """
        start = self._sync()
        inputs, packed = self.pack_prompts(image, prompts)
        preprocessed = self._sync()
        features = self.family.image_features(self.loaded.base_model, inputs)
        seen = self._sync()
        sites = self._device_sites(sites)
        if depth is None:
            depth = max((layer for layer, _ in sites), default=self.num_loaded_layers - 1)
        with capture_activations(self.layers, sites, depth, watch) as capture:
            capture.positions = packed.answer_positions
            capture.rows = torch.zeros_like(packed.answer_positions)
            try:
                self.loaded.base_model(input_ids=packed.input_ids, attention_mask=packed.mask,
                                       position_ids=packed.positions,
                                       mm_encoder_outputs={'image': features}, use_cache=False)
            except StopForward:
                pass
        done = self._sync()
        times = StageTimes(preprocess_ms=1e3 * (preprocessed - start),
                           vision_ms=1e3 * (seen - preprocessed),
                           decoder_ms=1e3 * (done - seen))
        return SharedCapture(capture.values, times, capture.layers_run, packed.prefix_length,
                             packed.length)

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
    def generate_tokens(self, image: np.ndarray, prompt: str,
                        max_new_tokens: int = 8) -> Generated:
        """Greedily generate the full model's answer to one prompt about one image."""
        self._require_full('generate')
        inputs = self.preprocess([image], [prompt])
        tokenizer = self.processor.tokenizer
        output = self.loaded.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new_tokens = output[0, inputs['input_ids'].shape[1]:]  # [n_new]
        return Generated(tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
                         int(new_tokens.shape[0]))

    def generate(self, image: np.ndarray, prompt: str, max_new_tokens: int = 8) -> str:
        """Return the text of :meth:`generate_tokens`."""
        return self.generate_tokens(image, prompt, max_new_tokens).text
