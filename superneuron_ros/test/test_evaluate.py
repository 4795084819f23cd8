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

"""Evaluation: super neurons against the full model's restricted and generated answers."""

import json

from calibrated_fixture import torch_threads
import numpy as np
import pytest
from superneuron_ros.cli.main import main
from superneuron_ros.errors import DataError
from superneuron_ros.lab.evaluate import (bootstrap_interval, confusion_scores, evaluate,
                                          EvaluationError, EvaluationOptions, label_token_ids,
                                          restricted_predictions)
from superneuron_ros.lab.report import format_evaluation_table
from superneuron_ros.lab.scene_datasets import write_dataset
from superneuron_ros.lab.scenes import TASKS
from superneuron_ros.method.profiles import Profile
from superneuron_ros.method.tasks import load_image, load_labelled_set
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig
import torch

pytest_plugins = ['calibrated_fixture']  # the calibrated_red_present fixture
RED = TASKS['red_present']


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Tiny models run many times faster on one thread of a busy machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope='module')
def fresh_scenes(tmp_path_factory):
    """Return 40 red_present scenes the profile was not calibrated on."""
    out = tmp_path_factory.mktemp('fresh')
    write_dataset(out, n=40, seed=7, size=32, tasks=[RED.name])
    return out / 'red_present.jsonl'


@pytest.fixture(scope='module')
def full_engine(calibrated_red_present):
    """Return an engine on the full tiny model."""
    return Engine(load_model(LoadConfig(str(calibrated_red_present.model_dir),
                                        quantization='none')))


def test_label_tokens_are_the_first_tokens_the_model_would_write(full_engine):
    """Map yes / no to their own tokens in both cases; refuse labels sharing a first token."""
    tokenizer = full_engine.processor.tokenizer
    prompt = full_engine.render_prompt('Is there a red shape?')
    yes, no = label_token_ids(tokenizer, prompt, ['yes', 'no'])
    assert set(tokenizer.convert_ids_to_tokens(list(yes))) == {'yes', 'Yes'}
    assert set(tokenizer.convert_ids_to_tokens(list(no))) == {'no', 'No'}
    with pytest.raises(DataError, match='same token'):
        label_token_ids(tokenizer, prompt, ['red', 'red circle'])


def test_restricted_predictions_and_confusion():
    """The label with the best-scoring first token wins; -1 counts as a wrong 'none' answer."""
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 4.0], [9.0, 1.0, 2.0, 0.0]])
    assert restricted_predictions(logits, [(1, 2), (3,)]).tolist() == [0, 1, 0]  # token 0 ignored
    scores = confusion_scores([0, 1, -1, 1], [0, 1, 1, 0], 2)
    assert scores['accuracy'] == 0.5 and scores['unmapped'] == 1
    assert scores['confusion'] == [[1, 1, 0], [0, 1, 1]]
    assert scores['balanced_accuracy'] == pytest.approx(0.5)


def test_options_are_validated():
    """Unknown methods and bad budgets raise EvaluationError naming the field."""
    with pytest.raises(EvaluationError, match='methods'):
        EvaluationOptions(methods=('superneurons', 'oracle'))
    with pytest.raises(EvaluationError, match='max_new_tokens'):
        EvaluationOptions(max_new_tokens=0)
    with pytest.raises(EvaluationError, match='quantization'):
        EvaluationOptions(quantization='int3')
    assert EvaluationOptions(methods=('generate', 'superneurons')).methods == \
        ('superneurons', 'generate')


def test_evaluate_compares_the_three_answers(calibrated_red_present, fresh_scenes, full_engine):
    """Every method answers every example; the restricted answer matches the engine's logits."""
    setup = calibrated_red_present
    examples = load_labelled_set(fresh_scenes, RED)
    result = evaluate(setup.model_dir, setup.profile_dir, examples,
                      EvaluationOptions(quantization='none', progress=False, max_new_tokens=3))
    methods = {m['method']: m for m in result['methods']}
    assert list(methods) == ['superneurons', 'restricted', 'generate']
    for m in methods.values():
        assert sum(map(sum, m['confusion'])) == 40
        assert m['latency_ms']['mean'] > 0 and m['latency_ms']['p90'] >= m['latency_ms']['p50']
        assert m['accuracy'] == pytest.approx(np.trace(np.array(m['confusion'])[:, :2]) / 40)
    assert methods['superneurons']['accuracy'] >= 0.65
    lo, hi = methods['superneurons']['accuracy_ci95']
    assert 0.05 < hi - lo < 0.5  # 40 examples: a wide interval
    for m in methods.values():
        lo, hi = m['accuracy_ci95']
        assert lo <= m['accuracy'] <= hi and hi - lo < 0.5
    readouts = result['readouts']
    profile = Profile.load(setup.profile_dir)
    if profile.readouts[:-1]:
        assert readouts['anytime']['mean_layers'] <= profile.exit_layer + 1
    else:  # no anytime readout: the cascade is the fixed exit
        assert readouts['anytime']['accuracy'] == readouts['fixed']['accuracy']
    # The batched readout pass and the runtime answer alike at the fixed exit.
    assert readouts['fixed']['accuracy'] == pytest.approx(methods['superneurons']['accuracy'],
                                                          abs=0.026)
    assert 0.0 <= readouts['fixed']['ece']['ece'] <= 0.5
    assert methods['superneurons']['stage_ms']['vision'] > 0
    assert methods['generate']['speedup'] == 1.0
    assert methods['generate']['unmapped'] == sum(row[2] for row in methods['generate']
                                                  ['confusion'])
    token_sets = label_token_ids(full_engine.processor.tokenizer, profile.prompt, RED.labels)
    logits = full_engine.first_token_logits([load_image(ex.image_path) for ex in examples],
                                            [profile.prompt] * len(examples))
    expected = restricted_predictions(logits, token_sets)
    truth = np.array([ex.label_index for ex in examples])
    assert methods['restricted']['accuracy'] == pytest.approx(float((expected == truth).mean()))
    table = format_evaluation_table(result)
    assert 'super neurons (exit layer' in table and 'greedy generation' in table
    json.dumps(result, allow_nan=False)


def test_cli_eval_prints_the_table_and_writes_json(calibrated_red_present, fresh_scenes,
                                                   tmp_path, capsys):
    """`superneuron eval` runs end to end with the profile's quantization by default."""
    setup = calibrated_red_present
    out = tmp_path / 'eval.json'
    assert main(['eval', '--model', str(setup.model_dir), '--profile', str(setup.profile_dir),
                 '--data', str(fresh_scenes), '--limit', '12', '--json', str(out),
                 '--max-new-tokens', '2', '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert 'accuracy' in printed and 'confusion' in printed and str(out) in printed
    result = json.loads(out.read_text())
    assert result['num_examples'] == 12 and result['quantization'] == 'none'
    assert [m['method'] for m in result['methods']] == ['superneurons', 'restricted', 'generate']


def test_cli_eval_refuses_a_missing_profile(calibrated_red_present, fresh_scenes, tmp_path,
                                            caplog):
    """A wrong profile path fails with exit code 2 and a message saying what to pass."""
    setup = calibrated_red_present
    assert main(['eval', '--model', str(setup.model_dir), '--profile', str(tmp_path / 'none'),
                 '--data', str(fresh_scenes)]) == 2
    assert 'superneuron calibrate' in caplog.text


def test_bootstrap_interval_covers_the_true_rate():
    """The 95% interval of 400 draws at rate 0.8 is about +-0.04 and holds 0.8."""
    rng = np.random.default_rng(3)
    hits = rng.random(400) < 0.8
    lo, hi = bootstrap_interval(hits, seed=1)
    assert lo < 0.8 < hi and 0.06 < hi - lo < 0.1
    assert bootstrap_interval(hits, seed=1) == [lo, hi]  # seeded


def test_cli_eval_of_a_folder_of_profiles_writes_one_summary_and_table(
        calibrated_red_present, fresh_scenes, tmp_path, capsys):
    """One command, every method, every profile: the JSON and the markdown table agree."""
    setup = calibrated_red_present
    out = tmp_path / 'summary.json'
    assert main(['eval', '--model', str(setup.model_dir), '--profile', str(setup.profiles_dir),
                 '--data', str(fresh_scenes.parent), '--limit', '10', '--json', str(out),
                 '--methods', 'superneurons,restricted,generate', '--max-new-tokens', '2',
                 '--no-progress']) == 0
    summary = json.loads(out.read_text())
    result = summary['tasks']['red_present']
    assert result['num_examples'] == 10
    methods = {m['method']: m for m in result['methods']}
    assert list(methods) == ['superneurons', 'restricted', 'generate']
    for m in methods.values():
        lo, hi = m['accuracy_ci95']
        assert lo <= m['accuracy'] <= hi
    table = out.with_suffix('.md').read_text()
    row = next(line for line in table.splitlines() if line.startswith('| red_present'))
    gen = methods['generate']
    assert f"{gen['accuracy']:.3f} [{gen['accuracy_ci95'][0]:.3f}, " in row
    fixed = result['readouts']['fixed']
    assert row.split(' | ')[1] == (f"{fixed['accuracy']:.3f} [{fixed['accuracy_ci95'][0]:.3f}, "
                                   f"{fixed['accuracy_ci95'][1]:.3f}]")
    assert row in capsys.readouterr().out
    assert main(['eval', '--model', str(setup.model_dir), '--profile', str(setup.profiles_dir),
                 '--data', str(tmp_path), '--methods', 'superneurons']) == 2  # no set there
