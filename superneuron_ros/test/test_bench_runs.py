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

"""Benchmarks: whole runs of `superneuron bench` on a tiny model (never its timings)."""

import json
from pathlib import Path
import tempfile

import pytest
from superneuron_ros.lab.bench import (BenchConfig, evaluate_targets, format_report, run_benchmark,
                                       write_json)
from superneuron_ros.lab.bench import runner
from superneuron_ros.lab.bench.loaded import wilson_interval
from superneuron_ros.lab.bench.quick_profiles import bench_tasks, quick_profiles
from superneuron_ros.lab.zoo import build_model_folder
from superneuron_ros.vlm.engine import Engine
from superneuron_ros.vlm.loading import load_model, LoadConfig

SIZE = (40, 48)


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
    """Build a tiny LLaVA (4 decoder layers) once for this module."""
    return build_model_folder(tmp_path_factory.mktemp('bench_model'), 'llava', seed=3)


@pytest.fixture(scope='module')
def main_profiles(folder, tmp_path_factory) -> Path:
    """Calibrate three benchmark profiles at layer 1; return their folder."""
    loaded = load_model(LoadConfig(str(folder), quantization='none', exit_layer=1))
    dirs = quick_profiles(Engine(loaded), folder, 'none', {'main': ([1], 3)}, SIZE, k=3,
                          calibration_images=6, out_dir=tmp_path_factory.mktemp('profiles'))
    return dirs['main'][1]


# ----------------------------------------------------------------------------- whole runs


def test_evaluate_targets():
    """Targets compare values with limits and say whether they apply to the run."""
    report = {'config': {'exit_layer': 1}, 'machine': {'device': 'cpu'},
              'model': {'family': 'qwen2_vl', 'num_layers': 28},
              'main': {'ratios': {'a/c': {'of_medians': 12.0}, 'c/d': {'of_medians': 1.3}}},
              'tasks': [{'tasks': 8, 'shared/one_task': 1.5}],
              'memory': {'meta': {'parameter_ratio': 0.4}}}
    rows = {row['target'][:5]: row for row in evaluate_targets(report)}
    assert rows['(a)/('] == {**rows['(a)/('], 'value': 12.0, 'met': True, 'applies': True}
    assert rows['(c)/(']['met'] is False and rows['8 tas']['met'] is True
    assert rows['resid']['applies'] is False and rows['resid']['met'] is False
    report['model']['num_layers'] = 4
    assert evaluate_targets(report)[0]['applies'] is False


def test_bench_command_end_to_end(folder, tmp_path):
    """`superneuron bench` measures every path and sweep and writes a consistent JSON report."""
    from superneuron_ros.cli.main import main
    out = tmp_path / 'bench.json'
    code = main(['bench', '--model', str(folder), '--repeats', '2', '--warmup', '0',
                 '--layers', '0,1', '--sizes', '24', '--task-counts', '1,2',
                 '--sweep-repeats', '1', '--calibration-images', '4', '--neurons', '2',
                 '--image-size', '40x48', '--tasks', '2', '--max-new-tokens', '2',
                 '--torch-profile', '3', '--work-dir', str(tmp_path / 'work'),
                 '--json', str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    main_ = report['main']
    assert set(main_['stats']) == {'a_generate', 'b_prefill', 'c_superneuron', 'd_floor'}
    assert all(s['n'] == 2 for s in main_['stats'].values())
    assert main_['interleaved_with_full'] and len(main_['tasks']) == 2
    for name, (a, b) in {'a/c': ('a_generate', 'c_superneuron'),
                         'c/d': ('c_superneuron', 'd_floor')}.items():
        assert main_['ratios'][name]['of_medians'] == pytest.approx(
            main_['stats'][a]['median'] / main_['stats'][b]['median'])
    assert set(main_['c_stages']) == {'preprocess_ms', 'vision_ms', 'decoder_ms', 'classify_ms',
                                      'other_ms'}
    assert [row['exit_layer'] for row in report['layers']] == [0, 1]
    assert report['sizes'][0]['image_size'] == [24, 24] and report['sizes'][0]['image_tokens'] > 0
    assert [row['tasks'] for row in report['tasks']] == [1, 2]
    assert report['tasks'][0]['shared/one_task'] == 1.0
    assert report['model']['image_size'] == [40, 48] and len(report['torch_profile']) == 3
    assert report['memory']['resident']['truncated']['parameters'] == \
        report['memory']['meta']['truncated']['parameters']
    assert len(report['targets']) == 8
    loaded = report['loaded']  # quick profiles: task 0 at the exit layer, four at the deepest
    assert loaded['tasks'][loaded['shallow']] == 1 and loaded['loaded_depth'] == 4
    assert loaded['layers_run'] == {'shallow_alone_loaded': 2, 'shallow_all_loaded': 2,
                                    'deepest_alone': 4, 'all_asked': 4}
    ratio = loaded['ratios']['shallow: all loaded / alone loaded']['of_medians']
    assert ratio == pytest.approx(loaded['stats']['shallow_all_loaded']['median']
                                  / loaded['stats']['shallow_alone_loaded']['median'])
    assert report['command'].startswith('superneuron bench --model ')
    assert '--layers 0,1' in report['command'] and '--image-size 40x48' in report['command']
    assert len(list((tmp_path / 'work' / 'main' / 'L1').iterdir())) == 2
    text = format_report(report)
    assert 'Exit layer sweep' in text and 'Targets' in text and '(d) floor' in text


def test_full_model_timed_apart_when_both_do_not_fit(folder, tmp_path, monkeypatch):
    """Without room for both models, (a), (b) are timed after (c), (d), and still reported."""
    monkeypatch.setattr(runner, 'fits_beside', lambda need: False)
    before = set(Path(tempfile.gettempdir()).glob('superneuron-bench-*'))
    report = run_benchmark(BenchConfig(
        model_path=str(folder), repeats=1, warmup=0, layers=(), sizes=(), task_counts=(),
        calibration_images=4, neurons=1, max_new_tokens=1, image_size=SIZE))
    assert set(Path(tempfile.gettempdir()).glob('superneuron-bench-*')) == before  # cleaned up
    assert report['profiles']['folder'] is None
    main_ = report['main']
    assert not main_['interleaved_with_full']
    assert set(main_['stats']) == {'a_generate', 'b_prefill', 'c_superneuron', 'd_floor'}
    assert main_['ratios']['b/c']['of_medians'] > 0
    assert 'layers' not in report and 'sizes' not in report and 'tasks' not in report
    path = write_json(report, tmp_path / 'r.json')
    assert json.loads(path.read_text())['main']['tasks'] == main_['tasks']


def test_wilson_interval():
    """The 95% Wilson interval of known proportions."""
    low, high = wilson_interval(99, 100)
    assert low == pytest.approx(0.9455, abs=1e-4) and high == pytest.approx(0.9983, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_real_profiles_are_timed_loaded_and_scored(folder, main_profiles):
    """--profiles times the given profiles as loaded set; --accuracy-scenes scores them."""
    report = run_benchmark(BenchConfig(
        model_path=str(folder), profiles=str(main_profiles), accuracy_scenes=4,
        repeats=1, warmup=0, layers=(), sizes=(), task_counts=(), calibration_images=4,
        neurons=1, max_new_tokens=1, image_size=SIZE))
    names = sorted(task.spec.name for task in bench_tasks(3))
    assert sorted(report['loaded']['tasks']) == names
    assert set(report['loaded']['layers_run'].values()) == {2}
    scored = report['anytime']['tasks']
    assert sorted(scored) == names  # the three colour-presence tasks have a ground truth
    for row in scored.values():
        assert row['examples'] == 4 and row['mean_layers_run'] == 2.0
        assert row['interval95'][0] <= row['accuracy'] <= row['interval95'][1]
        assert row['exit_layers_used'] == {'1': 4} and row['readout_layers'] == [1]
    with pytest.raises(ValueError, match='profiles'):
        BenchConfig(preset='demo', accuracy_scenes=3)
