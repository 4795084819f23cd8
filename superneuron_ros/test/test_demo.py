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
`superneuron demo` end to end: node, scene cameras and client, four processes on loopback.

The demo's teaching part runs too, scaled down: 40 recorded frames at 20 Hz, taught on the tiny
model's layers 0..3.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

pytest_plugins = ['calibrated_fixture']


def test_demo_runs_to_its_summary(calibrated_red_present, tmp_path):
    """The demo answers every task, teaches a new one, scores all and exits 0 with its children."""
    setup = calibrated_red_present
    summary_file = tmp_path / 'summary.json'
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run(
        [sys.executable, '-m', 'superneuron_ros.cli.main', 'demo',
         '--model', str(setup.model_dir), '--profiles', str(setup.profiles_dir),
         '--quantization', setup.quantization, '--json', str(summary_file),
         '--max-exit-layer', '3', '--record', '40', '--record-rate', '20', '--before', '2',
         '--after', '6', '--check', '12'],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    sources = {row['source']: row for row in summary['rows'] if row['task'] == 'red_present'}
    assert set(sources) == {'standing', 'ask', 'ask+image'}
    for row in sources.values():
        assert row['answers'] > 0 and row['scored'] > 0
        assert 0.0 <= row['accuracy'] <= 1.0 and row['p50_ms'] > 0
    assert sources['standing']['answers'] >= 4
    assert summary['exit_codes'] == {'node': 0, 'camera': 0, 'arm_camera': 0}
    teaching = summary['teaching']
    assert teaching['task'] == 'yellow_present' and teaching['recorded'] == 40
    assert sum(teaching['labels'].values()) == 40 and 0 <= teaching['exit_layer'] <= 3
    assert 0.0 <= teaching['cv_accuracy'] <= 1.0 and teaching['cv_protocol']
    assert teaching['fresh']['scored'] > 0 and 0.0 <= teaching['fresh']['accuracy'] <= 1.0
    assert teaching['fresh']['by_source'].get('check', 0) == 12  # every check call answered
    low, high = teaching['fresh']['wilson95']
    assert 0.0 <= low <= teaching['fresh']['accuracy'] <= high <= 1.0
    assert teaching['first_record_to_first_answer_s'] > teaching['record_s'] > 0
    assert teaching['standing_latency']['teaching']['answers'] >= 0
    assert teaching['longest_gap_teaching_s'] > 0
    assert 'taught yellow_present at run time' in result.stdout
    assert summary['frames'], 'latency statistics from the node'
    assert 'summary: answers from the superneuron node' in result.stdout


def test_longest_gap_counts_the_window_edges():
    """The gap before the first answer in a window runs from the last answer before it."""
    from superneuron_ros.lab.demo.teach_flow import longest_gap
    assert longest_gap([1.0, 2.0, 5.0], 1.5, 6.0) == 3.0  # 2 -> 5
    assert longest_gap([1.0, 2.0], 1.5, 9.0) == 7.0  # 2 -> the window's end
    assert longest_gap([], 3.0, 4.5) == 1.5  # no answer at all
    assert longest_gap([0.0, 4.0], 1.0, 2.0) == 2.0  # from the answer at 0 to the end
