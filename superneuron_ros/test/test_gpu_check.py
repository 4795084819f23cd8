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

"""tools/gpu_check.sh: its CPU dry run passes and writes the JSON and the markdown table."""

import json
import os
from pathlib import Path
import subprocess
import sys

SCRIPT = Path(__file__).resolve().parents[2] / 'tools' / 'gpu_check.sh'


def test_gpu_check_dry_run_on_cpu(tmp_path):
    """`gpu_check.sh --device cpu` runs tests and two demo benches and summarises them."""
    out = tmp_path / 'out'
    env = {**os.environ, 'PATH': f'{Path(sys.executable).parent}:{os.environ["PATH"]}'}
    done = subprocess.run(['bash', str(SCRIPT), '--device', 'cpu', '--out', str(out),
                           '--python', sys.executable], env=env, capture_output=True,
                          text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert not summary['failed']
    runs = summary['runs']
    assert [(r['model'], r['quantization'], r['device']) for r in runs] == [
        ('demo', 'none', 'cpu'), ('demo', 'nf4', 'cpu')]
    assert all(r['c_ms'] > 0 and r['d_ms'] > 0 and r['c/d'] > 0 for r in runs)
    tests = summary['tests']['core']
    assert tests['tests'] > 0 and tests['failures'] == tests['errors'] == 0
    table = (out / 'summary.md').read_text()
    assert '| demo | nf4 | float32 | cpu |' in table and '| core |' in table


def test_gpu_check_refuses_bad_arguments(tmp_path):
    """A wrong device or argument stops the script before any work."""
    for argv in (['--device', 'tpu'], ['--bogus']):
        done = subprocess.run(['bash', str(SCRIPT), *argv, '--out', str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and 'gpu_check.sh' in done.stderr
