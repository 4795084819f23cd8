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
Train the small demo VLM on generated scenes and measure it the way the product uses it.

:func:`train_demo` builds a zoo model (the 'demo' LLaVA preset by default) with seeded random
weights, trains it with AdamW on question / answer pairs drawn on the fly from
:mod:`~superneuron_ros.lab.scenes` (the prompt through the chat template with the generation
prompt, the loss on the answer tokens and eos only), saves it in float16 with its processor, and
evaluates it on fresh scenes by greedy generation (:mod:`~superneuron_ros.lab.train_eval`: seen
and unseen phrasings, shifted images). Every training question is worded by one of its task's
training phrasings, drawn at random (:func:`~superneuron_ros.lab.scenes.phrasings`). A vision
read-out trained along (:mod:`~superneuron_ros.lab.train_aux`, never saved) stands in for the
pretraining a real VLM's vision encoder has.
"""

from dataclasses import asdict, dataclass, field
import json
import logging
import math
from pathlib import Path
import shutil
import time
from typing import Any, Callable

import numpy as np
from superneuron_ros.errors import DataError, DeviceError
from superneuron_ros.lab.scenes import TASKS
from superneuron_ros.lab.train_aux import VisionReadout
from superneuron_ros.lab.train_batches import first_token_accuracy, QABatcher
from superneuron_ros.lab.train_data import draw_samples
from superneuron_ros.lab.train_eval import balanced_samples, CONDITIONS, evaluate_folder
import torch
from tqdm import tqdm

LOG = logging.getLogger(__name__)

REPORT = 'training_report.json'
# Each presence question is one of six alike tasks; the others get twice their weight, and
# left / right three times: it is only ever the main question of an image (its scene needs a
# red and a blue shape), while count, colour and the two new questions are added to every image.
DEFAULT_WEIGHTS = {name: (1.0 if name.endswith('_present') else
                          3.0 if name == 'red_left_of_blue' else 2.0) for name in TASKS}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: seed, budget (minutes and / or steps), optimiser and data settings."""

    seed: int = 0
    minutes: float | None = 85.0  # wall-clock budget of the training loop; None: steps only
    steps: int | None = None  # step budget; None: minutes only
    batch_size: int = 16  # images per step; each carries several questions
    lr: float = 1e-3  # peak learning rate (see learning_rate for the schedule)
    min_lr_ratio: float = 0.05
    decay_fraction: float = 0.3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int | None = 2  # torch CPU threads; None: leave torch's default
    device: str = 'cpu'  # 'cpu', 'cuda' or 'cuda:N'
    render_sizes: tuple[int, ...] = (64, 96, 128)  # square renders, resized by the processor
    task_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    check_every: int = 100  # steps between held-out first-token checks; 0: never
    check_per_task: int = 16
    check_size: int = 96  # side of the held-out check images
    presence_pairs: int = 2  # present + absent colour questions added to each training image
    simple_fraction: float = 0.5  # share of one-shape scenes at the start (a curriculum) ...
    simple_until: float = 0.6  # ... falling linearly until this fraction of the budget ...
    simple_floor: float = 0.2  # ... to this share of simple_fraction, kept to the end
    grow_at: float = 0.5  # share of the budget trained at half depth (grow_decoder); 0: none
    aux_weight: float = 1.0  # weight of the vision read-out loss (train_aux); 0: none

    def __post_init__(self) -> None:
        """Check the fields; raise DataError naming the offending one."""
        if self.minutes is None and self.steps is None:
            raise DataError('give a budget: minutes, steps or both')
        if self.minutes is not None and self.minutes <= 0:
            raise DataError(f'minutes={self.minutes} must be > 0')
        if self.steps is not None and self.steps < 1:
            raise DataError(f'steps={self.steps} must be >= 1')
        for name in ('batch_size', 'check_per_task'):
            if getattr(self, name) < 1:
                raise DataError(f'{name}={getattr(self, name)} must be >= 1')
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or not 0 < self.decay_fraction <= 1:
            raise DataError(f'lr={self.lr} must be > 0, min_lr_ratio={self.min_lr_ratio} in '
                            f'[0, 1] and decay_fraction={self.decay_fraction} in (0, 1]')
        if not (0 <= self.simple_fraction <= 1 and 0 <= self.simple_floor <= 1
                and self.simple_until > 0):
            raise DataError(f'simple_fraction={self.simple_fraction} and simple_floor='
                            f'{self.simple_floor} must lie in [0, 1], simple_until='
                            f'{self.simple_until} must be > 0')
        if not 0 <= self.grow_at < 1:
            raise DataError(f'grow_at={self.grow_at} must lie in [0, 1)')
        if self.aux_weight < 0:
            raise DataError(f'aux_weight={self.aux_weight} must be >= 0')
        if self.device != 'cpu' and not self.device.startswith('cuda'):
            raise DataError(f"device={self.device!r} must be 'cpu', 'cuda' or 'cuda:N'")
        if self.threads is not None and self.threads < 1:
            raise DataError(f'threads={self.threads} must be >= 1')
        if not self.render_sizes or min(self.render_sizes) < 8:
            raise DataError(f'render_sizes={self.render_sizes} must hold sizes >= 8 pixels')
        unknown = [name for name in self.task_weights if name not in TASKS]
        if unknown or not any(w > 0 for w in self.task_weights.values()):
            raise DataError(f'task_weights must give a positive weight to some of {list(TASKS)}; '
                            f'unknown: {unknown}')


@dataclass
class TrainResult:
    """What a training run did: steps, time, losses and the held-out checks along the way."""

    steps: int
    seconds: float
    final_loss: float  # mean loss over the last (up to) 20 steps
    history: list[dict[str, Any]]  # {'step', 'loss', 'lr', 'seconds'[, 'check']}
    losses: list[float]  # every step's loss

    def loss_curve(self, points: int = 20) -> dict[str, Any]:
        """Return the mean loss over `points` consecutive windows of steps."""
        window = max(1, len(self.losses) // points)
        means = [float(np.mean(self.losses[i:i + window]))
                 for i in range(0, len(self.losses), window)]
        return {'window_steps': window, 'mean_loss': [round(m, 4) for m in means]}


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """
    Return the learning rate at `step`, `progress` (0..1) into the budget.

    Linear warmup over `warmup_steps`, constant, then a cosine decay to `min_lr_ratio` over the
    last `decay_fraction` of the budget (a budget in minutes has no known step count).
    """
    warmup = min(1.0, (step + 1) / max(1, config.warmup_steps))
    start = 1.0 - config.decay_fraction
    into = 0.0 if progress <= start else min(1.0, (progress - start) / config.decay_fraction)
    cosine = 0.5 * (1.0 + math.cos(math.pi * into))
    return config.lr * warmup * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """Return the LLaVA model's language model (the module that holds ``layers``)."""
    return model.model.language_model


def shrink_decoder(model: torch.nn.Module) -> torch.nn.ModuleList:
    """
    Keep only the even-numbered decoder layers in the forward pass; return the full list.

    The odd layers stay in the model's parameters (untouched: no gradient reaches them) until
    :func:`grow_decoder` puts them back.
    """
    decoder = _decoder(model)
    full = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(full)[0::2])
    return full


@torch.no_grad()
def grow_decoder(model: torch.nn.Module, full: torch.nn.ModuleList) -> None:
    """
    Put every layer of `full` back, each odd layer a copy of the trained layer before it.

    The copies start with zero attention and MLP output projections, so each adds nothing to
    the residual stream: the grown model computes exactly what the half-depth one did, and the
    new layers learn from there (progressive stacking). Gradients reach the zeroed projections
    at once (their inputs are not zero), then the rest of each new layer.
    """
    for index in range(1, len(full), 2):
        full[index].load_state_dict(full[index - 1].state_dict())
        full[index].self_attn.o_proj.weight.zero_()
        full[index].mlp.down_proj.weight.zero_()
    _decoder(model).layers = full


def train_model(model: torch.nn.Module, processor: Any, config: TrainConfig,
                progress_bar: bool = True) -> TrainResult:
    """
    Train `model` in place on generated scenes until the step or time budget is spent.

    With ``grow_at`` > 0 the first part of the budget trains the even-numbered decoder layers
    only (half the depth, about half the cost of a step), then the model grows to its full depth
    (:func:`grow_decoder`) and trains on. With ``aux_weight`` > 0 the loss adds that share of
    a vision read-out's (:class:`~superneuron_ros.lab.train_aux.VisionReadout`, not kept).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.device.startswith('cuda') and not torch.cuda.is_available():
        raise DeviceError(f'device={config.device!r} but torch sees no CUDA device; '
                          'train with --device cpu')
    device = torch.device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 1])
    batcher = QABatcher(processor)
    checks = [sample for task, weight in config.task_weights.items() if weight > 0
              for sample in balanced_samples(task, config.check_per_task, config.seed + 5000,
                                             config.check_size)]
    tasks = [task for task, weight in config.task_weights.items() if weight > 0]
    readout = (VisionReadout(model.config.text_config.hidden_size, tasks,
                             model.config.image_seq_length).to(device)
               if config.aux_weight > 0 else None)
    hook = None if readout is None else readout.attach(model)
    trained = list(model.parameters()) + ([] if readout is None else list(readout.parameters()))
    decay = [p for p in trained if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in trained if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': config.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}],
                                  lr=config.lr, betas=(0.9, 0.95))
    budget = None if config.minutes is None else 60.0 * config.minutes
    history: list[dict[str, Any]] = []
    losses: list[float] = []
    model.train()
    full = shrink_decoder(model) if config.grow_at > 0 else None
    start = time.monotonic()
    bar = tqdm(total=config.steps, disable=not progress_bar, mininterval=5.0, unit='step',
               desc='train-demo')
    step = 0
    while True:
        elapsed = time.monotonic() - start
        fraction = max(0.0 if config.steps is None else step / config.steps,
                       0.0 if budget is None else elapsed / budget)
        if full is not None and fraction >= config.grow_at:
            grow_decoder(model, full)
            full = None
            history.append({'step': step, 'grown_to_layers': len(_decoder(model).layers),
                            'seconds': round(elapsed, 1)})
            LOG.info('step %d: decoder grown to %d layers', step, len(_decoder(model).layers))
        if fraction >= 1.0:
            break
        lr = learning_rate(config, step, fraction)
        for group in optimizer.param_groups:
            group['lr'] = lr
        simple = config.simple_fraction * max(config.simple_floor,
                                              1.0 - fraction / config.simple_until)
        samples = draw_samples(rng, config.batch_size, config.task_weights,
                               config.render_sizes, config.presence_pairs, simple)
        batch = batcher.collate(samples)
        loss = model(**{name: value.to(device) for name, value in batch.items()},
                     use_cache=False).loss
        aux = None if readout is None else readout.loss(samples)
        optimizer.zero_grad(set_to_none=True)
        (loss if aux is None else loss + config.aux_weight * aux).backward()
        torch.nn.utils.clip_grad_norm_(trained, config.grad_clip)
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        record: dict[str, Any] = {'step': step, 'loss': round(losses[-1], 4), 'lr': lr,
                                  'seconds': round(time.monotonic() - start, 1)}
        if aux is not None:
            record['aux_loss'] = round(float(aux.detach()), 4)
        if config.check_every and step % config.check_every == 0:
            record['check'] = {k: round(v, 3) for k, v in
                               first_token_accuracy(model, batcher, checks).items()}
            LOG.info('step %d, loss %.4f, held-out first-token accuracy: %s', step,
                     float(np.mean(losses[-20:])), record['check'])
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f'{np.mean(losses[-20:]):.4f}', lr=f'{lr:.2e}', refresh=False)
    bar.close()
    if hook is not None:
        hook.remove()
    if full is not None:  # the budget ended before the growing point: save the full depth
        grow_decoder(model, full)
    model.to('cpu').eval()
    return TrainResult(steps=step, seconds=time.monotonic() - start,
                       final_loss=float(np.mean(losses[-20:])) if losses else float('nan'),
                       history=history, losses=losses)


def folder_bytes(folder: str | Path) -> int:
    """Return the total size of the files in a folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob('*') if p.is_file())


def _copy_model(source: str | Path, out_dir: str | Path) -> Path:
    """Copy a trained model folder (not its report) into out_dir; return out_dir."""
    source, out = Path(source), Path(out_dir)
    if not (source / 'config.json').is_file() or not (source / REPORT).is_file():
        raise DataError(f'{source} is not a folder written by train-demo (config.json and '
                        f'{REPORT} expected)')
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        target = out / path.name
        if path.is_file() and path.name != REPORT and path.resolve() != target.resolve():
            shutil.copyfile(path, target)
    return out


def evaluation_entries(folder: str | Path, n_per_task: int, seed: int, size: int,
                       progress_bar: bool = True, command: str = '') -> dict[str, Any]:
    """Evaluate a saved model (see evaluate_folder); return the report's evaluation entries."""
    results = evaluate_folder(folder, n_per_task, seed, size, progress_bar=progress_bar)
    evaluation = {
        'method': 'greedy generation through load_model(quantization=none) + '
                  'Engine.generate on fresh scenes, mapped with TaskSpec.match_answer; '
                  'unmapped = wrong; interval: 95% Wilson score',
        'conditions': {'seen': 'training phrasings, images as in training',
                       'unseen': 'held-out phrasings never shown in training',
                       'shifted': 'training phrasings on images outside the training ranges '
                                  '(scenes.SHIFTS: dim, bright, noisy in turn)'},
        'seed': seed, 'image_size': size, 'n_per_task': n_per_task}
    if command:
        evaluation['command'] = command
    return {'evaluation': evaluation,
            'accuracy': {condition: {task: entry['accuracy']
                                     for task, entry in results[condition].items()}
                         for condition in CONDITIONS},
            'per_task': results}


def evaluate_into_report(folder: str | Path, n_per_task: int, seed: int, size: int,
                         command: str = '', progress_bar: bool = True) -> dict[str, Any]:
    """Evaluate a trained folder and write the entries into its training report (kept else)."""
    path = Path(folder) / REPORT
    if not path.is_file():
        raise DataError(f'{path} is missing: evaluate a folder written by train-demo')
    report = json.loads(path.read_text(encoding='utf-8'))
    report.update(evaluation_entries(folder, n_per_task, seed, size, progress_bar, command))
    path.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    return report


def train_demo(out_dir: str | Path, config: TrainConfig, *, preset: str | None = 'demo',
               num_layers: int = 2, eval_per_task: int = 150, eval_seed: int = 1000,
               eval_size: int = 96, command: str = '', progress_bar: bool = True,
               on_saved: Callable[[Path], None] | None = None,
               init: str | Path | None = None) -> dict[str, Any]:
    """
    Build, train, save (float16) and evaluate a LLaVA zoo model; return the written report.

    With `init` (a folder written by train-demo), training continues from its weights instead
    of seeded random ones (its files are copied into `out_dir` first, its report is not).

    `preset=None` builds a tiny LLaVA of `num_layers` decoder layers instead of a preset (for
    tests). The report goes to ``out_dir/training_report.json``; `eval_per_task=0` skips the
    evaluation. `on_saved` is called with the folder once the weights are saved.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from superneuron_ros.lab.zoo import build_model_folder
    if init is None:
        out = build_model_folder(out_dir, 'llava', preset=preset, seed=config.seed,
                                 num_layers=num_layers)
    else:
        out = _copy_model(init, out_dir)
    kwargs = {'local_files_only': True, 'trust_remote_code': False}
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32, **kwargs)
    processor = AutoProcessor.from_pretrained(out, **kwargs)
    LOG.info('training %s in %s: %s', preset or 'a tiny llava', out, config)
    result = train_model(model, processor, config, progress_bar=progress_bar)
    model.to(torch.float16).save_pretrained(out)
    if on_saved is not None:
        on_saved(out)
    report: dict[str, Any] = {
        'command': command, 'preset': preset, 'seed': config.seed, 'steps': result.steps,
        'minutes': round(result.seconds / 60.0, 2), 'final_loss': round(result.final_loss, 4),
        'images_seen': result.steps * config.batch_size,
        'config': {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in asdict(config).items()},
        'weights_dtype': 'float16', 'torch_threads': torch.get_num_threads(),
        'init': None if init is None else str(init)}
    if eval_per_task > 0:
        report.update(evaluation_entries(out, eval_per_task, eval_seed, eval_size,
                                         progress_bar))
    report['loss_curve'] = result.loss_curve()
    report['checks'] = [{'step': r['step'], 'first_token_accuracy': r['check']}
                        for r in result.history if 'check' in r]
    report['grown'] = [r for r in result.history if 'grown_to_layers' in r]
    report['size_bytes'] = folder_bytes(out)  # before the report is written
    (out / REPORT).write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    return report
