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

"""Tests of the demo-model training: packing, a short real training run, the shipped model."""

import json
from pathlib import Path

import numpy as np
import pytest
from superneuron_ros.cli.main import build_parser
from superneuron_ros.cli.train_demo import command_line
from superneuron_ros.errors import DataError
from superneuron_ros.lab.scene_types import COLOURS, Scene, Shape
from superneuron_ros.lab.scenes import get_task, phrasings, TASKS
from superneuron_ros.lab.train import (DEFAULT_WEIGHTS, evaluate_into_report,
                                       grow_decoder, REPORT, shrink_decoder, train_demo,
                                       TrainConfig)
from superneuron_ros.lab.train_aux import colour_grid, VisionReadout
from superneuron_ros.lab.train_batches import IGNORE, QABatcher, Sample
from superneuron_ros.lab.train_data import balance_extras, draw_samples
from superneuron_ros.lab.train_eval import (balanced_samples, CONDITIONS, evaluate_folder,
                                            wilson_interval)
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
import torch

DEMO_MODEL = Path(__file__).resolve().parents[1] / 'superneuron_ros' / 'data' / 'demo_model'
TINY_SIZE = 32  # image side of the zoo's tiny LLaVA


@pytest.fixture(scope='module')
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Train a tiny LLaVA for a few steps; return its folder and report."""
    config = TrainConfig(seed=3, minutes=None, steps=16, batch_size=4, lr=3e-3, warmup_steps=2,
                         threads=None, render_sizes=(TINY_SIZE,), check_every=8,
                         check_per_task=2, check_size=TINY_SIZE)
    out = tmp_path_factory.mktemp('trained')
    report = train_demo(out, config, preset=None, num_layers=2, eval_per_task=0,
                        command='test', progress_bar=False)
    return out, report


def test_config_rejects_bad_values() -> None:
    """A config without a budget, or with a bad field, names the problem."""
    with pytest.raises(DataError, match='budget'):
        TrainConfig(minutes=None, steps=None)
    with pytest.raises(DataError, match='batch_size'):
        TrainConfig(batch_size=0)
    with pytest.raises(DataError, match='task_weights'):
        TrainConfig(task_weights={'no_such_task': 1.0})
    with pytest.raises(DataError, match='simple_fraction'):
        TrainConfig(simple_fraction=1.5)
    with pytest.raises(DataError, match='device'):
        TrainConfig(device='tpu')


def test_draw_samples_keeps_presence_balanced() -> None:
    """Added presence questions come in yes/no pairs; every answer is the scene's truth."""
    samples = draw_samples(np.random.default_rng(0), 40, DEFAULT_WEIGHTS, (48,))
    extra = [label for s in samples for task, label in s.questions[1:]
             if task.endswith('_present')]
    assert extra.count('yes') == extra.count('no') > 20
    used: dict[str, set[str]] = {}
    for sample in samples:
        tasks = [task for task, _ in sample.questions]
        assert len(tasks) == len(set(tasks)) >= 2
        assert sample.image.shape == (48, 48, 3) and sample.image.dtype == np.uint8
        assert len(sample.wordings) == len(tasks)
        for task, text in zip(tasks, sample.wordings):
            assert text in phrasings(task, 'seen') and text not in phrasings(task, 'unseen')
            used.setdefault(task, set()).add(text)
    assert len(used['shape_count']) >= 3  # the wording varies
    assert {'red_touching_edge', 'shape_in_left_half'} <= set(used)
    image = np.zeros((4, 4, 3), dtype=np.uint8)  # added yes/no questions: balanced per batch
    drafts = [(image, [('red_present', 'no'), ('shape_in_left_half', 'yes')], 1)
              for _ in range(9)]
    drafts += [(image, [('shape_in_left_half', 'yes')], 1)]
    drafts += [(image, [('red_present', 'yes'), ('shape_in_left_half', 'no')], 1)
               for _ in range(3)]
    balance_extras(drafts, np.random.default_rng(0))
    labels = [label for _, questions, _ in drafts for name, label in questions
              if name == 'shape_in_left_half']
    assert labels.count('yes') == labels.count('no') == 3
    assert drafts[9][1] == [('shape_in_left_half', 'yes')]  # a main question is never dropped
    assert all(questions[0][0] == 'red_present' for _, questions, _ in drafts[:9])
    simple = draw_samples(np.random.default_rng(1), 20, DEFAULT_WEIGHTS, (48,), simple=1.0)
    for sample in simple:  # one shape: its colour present, another absent, and the largest
        labels = dict(sample.questions)
        assert list(labels.values()).count('yes') == list(labels.values()).count('no') == 1
        assert labels[labels['shape_colour'] + '_present'] == 'yes'


def test_packed_rows_match_single_questions(trained: tuple[Path, dict]) -> None:
    """A packed row gives each answer the same logits as its own single-question sequence."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, _ = trained
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    batcher = QABatcher(AutoProcessor.from_pretrained(folder))
    samples = draw_samples(np.random.default_rng(1), 3, DEFAULT_WEIGHTS, (TINY_SIZE,))
    singles = [Sample(s.image, (q,), (w,)) for s in samples
               for q, w in zip(s.questions, s.wordings)]
    packed, single = batcher.collate(samples), batcher.collate(singles)
    assert packed['attention_mask'].ndim == 4 and single['attention_mask'].ndim == 2

    def answer_logits(batch: dict) -> list[torch.Tensor]:
        with torch.no_grad():
            logits = model(**batch).logits  # [B, T, V]
        labels = batch['labels']
        first = (labels != IGNORE) & (labels.roll(1, dims=1) == IGNORE)  # [B, T]
        return [logits[row, pos - 1] for row, pos in first.nonzero().tolist()]

    a, b = answer_logits(packed), answer_logits(single)
    assert len(a) == len(b) == len(singles)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_training_reduces_loss_and_saves_a_loadable_model(trained: tuple[Path, dict]) -> None:
    """A few steps lower the loss; the float16 folder loads through load_model and generates."""
    folder, report = trained
    losses = report['loss_curve']['mean_loss']
    assert report['steps'] == 16 and len(losses) == 16
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.0
    assert [check['step'] for check in report['checks']] == [8, 16]
    saved = json.loads((folder / REPORT).read_text())
    assert saved['steps'] == 16 and saved['weights_dtype'] == 'float16'
    assert json.loads((folder / 'config.json').read_text())['dtype'] == 'float16'
    engine = Engine(load_model(LoadConfig(str(folder), quantization='none', device='cpu')))
    sample = balanced_samples('red_present', 1, seed=0, size=TINY_SIZE)[0]
    text = engine.generate(sample.image, engine.render_prompt(get_task('red_present').question))
    assert isinstance(text, str)
    report = evaluate_into_report(folder, 1, seed=5, size=TINY_SIZE, command='again',
                                  progress_bar=False)
    saved = json.loads((folder / REPORT).read_text())
    assert saved['steps'] == 16 and saved['evaluation']['command'] == 'again'
    assert saved['per_task'] == report['per_task'] and set(saved['accuracy']) == set(CONDITIONS)
    assert saved['per_task']['seen']['shape_count']['n'] == 1
    with pytest.raises(DataError, match='train-demo'):
        evaluate_into_report(folder / 'nothing', 1, seed=5, size=TINY_SIZE)
    results = evaluate_folder(folder, n_per_task=2, seed=5, size=TINY_SIZE,
                              tasks=['red_present', 'shape_in_left_half'], progress_bar=False)
    assert set(results) == set(CONDITIONS)
    for condition in CONDITIONS:
        entry = results[condition]['shape_in_left_half']
        assert entry['n'] == 2 and entry['accuracy'] == entry['correct'] / 2
        assert entry['wilson95'][0] <= entry['accuracy'] <= entry['wilson95'][1]


def test_growing_the_decoder_keeps_what_it_computes(trained: tuple[Path, dict]) -> None:
    """
    Half-depth training, then growth: the grown model computes what the shallow one did.

    The fixture trained 8 of its 16 steps on layer 0 alone (grow_at 0.5), then both layers.
    """
    from transformers import AutoModelForImageTextToText
    folder, report = trained
    assert report['grown'] == [{'step': 8, 'grown_to_layers': 2,
                                'seconds': report['grown'][0]['seconds']}]
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    layers = model.model.language_model.layers
    assert len(layers) == 2
    full = shrink_decoder(model)
    assert len(model.model.language_model.layers) == 1 and len(full) == 2
    ids = torch.tensor([[1, 7, 9, 11, 13]])
    shallow = model(input_ids=ids, use_cache=False).logits
    grow_decoder(model, full)
    assert model.model.language_model.layers is full
    assert torch.equal(full[1].self_attn.q_proj.weight, full[0].self_attn.q_proj.weight)
    assert not full[1].mlp.down_proj.weight.any() and not full[1].self_attn.o_proj.weight.any()
    assert torch.allclose(model(input_ids=ids, use_cache=False).logits, shallow, atol=1e-6)
    with pytest.raises(DataError, match='grow_at'):
        TrainConfig(grow_at=1.0)


def test_training_continues_from_a_trained_folder(trained: tuple[Path, dict],
                                                  tmp_path: Path) -> None:
    """--init starts from the trained weights: the first loss is the trained model's level."""
    folder, first = trained
    config = TrainConfig(seed=4, minutes=None, steps=2, batch_size=4, lr=1e-4, warmup_steps=1,
                         threads=None, render_sizes=(TINY_SIZE,), check_every=0, grow_at=0.0)
    report = train_demo(tmp_path / 'more', config, preset=None, eval_per_task=0, init=folder,
                        progress_bar=False)
    assert report['init'] == str(folder) and report['steps'] == 2
    assert report['loss_curve']['mean_loss'][0] < first['loss_curve']['mean_loss'][0] - 1.0
    with pytest.raises(DataError, match='train-demo'):
        train_demo(tmp_path / 'x', config, preset=None, eval_per_task=0, init=tmp_path / 'none')


def test_wilson_interval_and_evaluation_conditions() -> None:
    """Wilson bounds match known values; conditions share scenes, not wordings or pixels."""
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(
        0.2775, abs=1e-4)
    assert wilson_interval(150, 150)[0] == pytest.approx(0.9751, abs=1e-4)
    with pytest.raises(DataError, match='n=0'):
        wilson_interval(0, 0)
    seen, unseen, shifted = (balanced_samples('shape_count', 8, 3, 48, condition)
                             for condition in CONDITIONS)
    assert [s.questions for s in seen] == [s.questions for s in unseen] == [
        s.questions for s in shifted]
    assert {s.wordings[0] for s in seen} == set(phrasings('shape_count', 'seen'))
    assert {s.wordings[0] for s in unseen} == set(phrasings('shape_count', 'unseen'))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(seen, unseen))
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(seen, shifted))
    with pytest.raises(DataError, match='condition'):
        balanced_samples('shape_count', 2, 0, 48, 'rainy')
    for task in TASKS:  # every task, the new ones too, has balanced, true samples
        samples = balanced_samples(task, 4, 0, 32)
        assert {label for s in samples for _, label in s.questions} <= set(
            get_task(task).labels)


def test_colour_grid_labels_the_cells_under_each_shape() -> None:
    """A cell takes the colour covering at least a fifth of it, whatever the scene's looks."""
    red = Shape('square', 'red', 0.25, 0.25, 0.2)  # covers x, y in [0.05, 0.45]
    blue = Shape('circle', 'blue', 0.875, 0.875, 0.1)
    scene = Scene((30, 160, 150), (red, blue), noise=9.0, brightness=0.7,
                  background_end=(200, 200, 40))
    grid = colour_grid(scene, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[:2, :2] = 1 + list(COLOURS).index('red')
    expected[3, 3] = 1 + list(COLOURS).index('blue')
    np.testing.assert_array_equal(grid, expected)


def test_readout_trains_the_vision_side_only(trained: tuple[Path, dict]) -> None:
    """The read-out's loss reaches the vision tower and projector, never the decoder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, _ = trained
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder)
    readout = VisionReadout(model.config.text_config.hidden_size, list(TASKS),
                            model.config.image_seq_length)
    hook = readout.attach(model)
    samples = draw_samples(np.random.default_rng(4), 4, DEFAULT_WEIGHTS, (TINY_SIZE,))
    assert all(sample.scene is not None for sample in samples)
    batch = QABatcher(processor).collate(samples)
    model(**batch)
    hook.remove()
    loss = readout.loss(samples)
    assert loss.ndim == 0 and float(loss.detach()) > 0
    loss.backward()
    vision = [p.grad for p in model.model.vision_tower.parameters()]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in vision)
    assert all(p.grad is None for p in model.model.language_model.parameters())
    assert all(p.grad is not None for p in readout.parameters())
    with pytest.raises(RuntimeError, match='attach'):
        readout.loss(samples)  # the captured features are used once


def test_cli_parses_and_reproduces_the_command(tmp_path: Path) -> None:
    """The train-demo subcommand parses its options and writes a reproducible command line."""
    args = build_parser().parse_args(['train-demo', '--out', str(tmp_path), '--steps', '5',
                                      '--lr', '0.002', '--batch-size', '8', '--device', 'cuda'])
    assert args.device == 'cuda' and '--device cuda' in command_line(args)
    grown = build_parser().parse_args(['train-demo', '--out', str(tmp_path), '--grow-at', '0',
                                       '--aux-weight', '0.5'])
    assert '--grow-at 0' in command_line(grown) and '--aux-weight 0.5' in command_line(grown)
    assert (args.steps, args.lr, args.batch_size, args.minutes) == (5, 0.002, 8, 85.0)
    again = build_parser().parse_args(command_line(args).split()[1:])
    assert vars(again) == vars(args)
    with pytest.raises(SystemExit):
        build_parser().parse_args(['train-demo', '--out', str(tmp_path), '--minutes', '0'])
    only = build_parser().parse_args(['train-demo', '--out', str(tmp_path), '--eval-only',
                                      '--eval-per-task', '3'])
    assert command_line(only).split()[3:] == [str(tmp_path), '--eval-only', '--threads', '2',
                                              '--eval-per-task', '3', '--eval-seed', '1000']
    assert vars(build_parser().parse_args(command_line(only).split()[1:])) == vars(only)


def test_demo_preset_is_deep_and_small() -> None:
    """The demo preset: >= 12 decoder layers, >= 96 px, 64 image tokens, <= 40 MB in float16."""
    from superneuron_ros.lab.zoo.build import count_parameters
    from superneuron_ros.lab.zoo.presets import get_preset
    preset = get_preset('demo')
    config = preset.config()
    vision = config.vision_config
    assert config.text_config.num_hidden_layers >= 12 and preset.image_size >= 96
    assert (vision.image_size // vision.patch_size) ** 2 == config.image_seq_length == 64
    assert 2 * count_parameters(config) <= 40e6


@pytest.mark.skipif(not (DEMO_MODEL / 'model.safetensors').is_file(),
                    reason='the demo model is not shipped in this checkout')
def test_shipped_demo_model_answers_presence_questions() -> None:
    """The shipped demo model loads offline, is small, and answers fresh presence questions."""
    size = sum(p.stat().st_size for p in DEMO_MODEL.iterdir() if p.is_file())
    assert size <= 40 * 1000 * 1000
    engine = Engine(load_model(LoadConfig(str(DEMO_MODEL), quantization='none', device='cpu')))
    correct = total = 0
    for task in ('red_present', 'blue_present', 'yellow_present'):
        spec = get_task(task)
        prompt = engine.render_prompt(spec.question)
        for sample in balanced_samples(task, 4, seed=424242, size=96):
            correct += spec.match_answer(engine.generate(sample.image, prompt)) == \
                spec.label_index(sample.questions[0][1])
            total += 1
    assert correct >= total - 2, f'{correct} of {total} presence answers correct'
