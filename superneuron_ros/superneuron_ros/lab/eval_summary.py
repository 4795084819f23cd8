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
Several tasks evaluated in one command: one JSON holding every task's evaluation, one table.

``superneuron eval --profile PROFILES/ --data SETS/`` evaluates each profile of the folder on its
task's labelled set (``SETS/<task>.jsonl`` as ``superneuron scenes`` writes them, or one JSONL
file holding every task's records) with every method, and writes the per-task results of
:func:`~superneuron_ros.lab.evaluate.evaluate` into one JSON; :func:`markdown_table` makes the
README's table from that JSON alone.
"""

from pathlib import Path
from typing import Any, Mapping, Sequence

from superneuron_ros.errors import DataError
from superneuron_ros.lab.evaluate import evaluate, EvaluationOptions
from superneuron_ros.method.profiles import find_profiles, Profile
from superneuron_ros.method.tasks import load_labelled_set

SUMMARY_FORMAT = 'superneuron_ros.evaluation_summary'


def task_data(data: Path, task_name: str) -> Path:
    """Return the labelled set of a task: ``data/<task>.jsonl`` for a folder, else `data`."""
    path = data / f'{task_name}.jsonl' if data.is_dir() else data
    if not path.is_file():
        raise DataError(f'no labelled set for task {task_name!r}: {path} does not exist; pass '
                        'a folder holding <task>.jsonl per task (superneuron scenes writes one) '
                        'or a JSONL file with every task')
    return path


def evaluate_all(model_path: Path, profiles: Path, data: Path, options: EvaluationOptions,
                 limit: int | None = None) -> dict[str, Any]:
    """Evaluate every profile under `profiles` on its task's set; return the summary JSON."""
    tasks = {}
    for path in find_profiles([profiles]):
        profile = Profile.load(path)
        examples = load_labelled_set(task_data(data, profile.task.name), profile.task)
        tasks[profile.task.name] = evaluate(model_path, path, examples[:limit], options)
    return {'format': SUMMARY_FORMAT, 'format_version': 1, 'model': str(model_path),
            'profiles': str(profiles), 'data': str(data), 'methods': list(options.methods),
            'tasks': tasks}


def _accuracy(cell: Mapping[str, Any] | None) -> str:
    if not cell:
        return '-'
    lo, hi = cell['accuracy_ci95']
    return f"{cell['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown_table(summary: Mapping[str, Any]) -> str:
    """Return the summary as a markdown table: one row per task, accuracies with 95% intervals."""
    lines = ['| task (n) | SN fixed exit | SN anytime = node path (mean layers) | model, first '
             'token | model, greedy generation | ECE fixed / anytime | p50 ms SN / first '
             'token / generation |', '| --- | --- | --- | --- | --- | --- | --- |']
    for name, result in summary['tasks'].items():
        methods = {m['method']: m for m in result['methods']}
        readouts = result.get('readouts') or {}
        fixed, anytime = readouts.get('fixed'), readouts.get('anytime')
        node = methods.get('superneurons')
        node_cell = '-' if not node else _accuracy(node) + (
            f" ({anytime['mean_layers']:.2f})" if anytime else '')
        ece = '-' if not fixed else (f"{fixed['ece']['ece']:.3f} / "
                                     f"{anytime['ece']['ece']:.3f}")
        p50 = ' / '.join('-' if method not in methods else
                         f"{methods[method]['latency_ms']['p50']:.1f}"
                         for method in ('superneurons', 'restricted', 'generate'))
        lines.append(f"| {name} (n={result['num_examples']}) | {_accuracy(fixed)} | {node_cell} "
                     f"| {_accuracy(methods.get('restricted'))} | "
                     f"{_accuracy(methods.get('generate'))} | {ece} | {p50} |")
    return '\n'.join(lines)


def summary_markdown(summary: Mapping[str, Any], command: Sequence[str] = ()) -> str:
    """Return the table with what it was measured on and, if given, the command."""
    first = next(iter(summary['tasks'].values()), None)
    where = '' if first is None else (f" ({first['quantization']}, modules "
                                      f"{first['quantized_modules']})")
    text = [f"Evaluation of {summary['profiles']} on {summary['data']}, model "
            f"{summary['model']}{where}; accuracy with bootstrap 95% intervals.", '',
            markdown_table(summary)]
    if command:
        text += ['', 'Command: `' + ' '.join(command) + '`']
    return '\n'.join(text) + '\n'
