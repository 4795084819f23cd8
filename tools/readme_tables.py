#!/usr/bin/env python3
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
Print the README's demo tables (markdown) from the files that hold the figures.

    python tools/readme_tables.py model [MODEL_DIR]        the model's own greedy accuracy
    python tools/readme_tables.py layers [PROFILES_DIR]    cross-validated super neurons per layer

Nothing is computed here: every number is read from training_report.json or a profile's
report.json, so the README can be regenerated and checked against them. The evaluation table is
the one `superneuron eval --profile PROFILES/ --data SETS/` writes beside its JSON
(eval_summary.md, :func:`superneuron_ros.lab.eval_summary.markdown_table`).
"""

import json
from pathlib import Path
import sys

DATA = Path(__file__).resolve().parents[1] / 'superneuron_ros' / 'superneuron_ros' / 'data'


def _interval(entry: dict, key: str = 'wilson95') -> str:
    low, high = entry[key]
    return f"{entry['accuracy']:.3f} [{low:.3f}, {high:.3f}]"


def model_table(folder: Path) -> str:
    """Return the model's own greedy accuracy per task and condition (training report)."""
    report = json.loads((folder / 'training_report.json').read_text(encoding='utf-8'))
    per_task = report['per_task']
    conditions = [c for c in ('seen', 'unseen', 'shifted') if c in per_task]
    lines = ['| task | ' + ' | '.join(f'{c} phrasings' if c != 'shifted' else 'shifted images'
                                      for c in conditions) + ' |',
             '| --- |' + ' --- |' * len(conditions)]
    for task in per_task[conditions[0]]:
        cells = [_interval(per_task[c][task]) if task in per_task[c] else '-'
                 for c in conditions]
        lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
    n = per_task[conditions[0]][next(iter(per_task[conditions[0]]))]['n']
    lines.append('')
    lines.append(f"n = {n} fresh scenes per cell (seed {report['evaluation']['seed']}), "
                 f"{report['steps']} steps in {report['minutes']} min; 95% Wilson intervals.")
    return '\n'.join(lines)


def _readout(chosen: dict) -> str:
    if chosen['kind'] == 'vote':
        return f"vote of {chosen['num_neurons']}"
    return f"linear, m={chosen['linear_m']}"


def layers_table(folder: Path) -> str:
    """Return the cross-validated accuracy per layer of every profile under `folder`."""
    reports = sorted(folder.glob('*/report.json'))
    rows, depth = [], 0
    for path in reports:
        report = json.loads(path.read_text(encoding='utf-8'))
        depth = max(depth, len(report['per_layer']))
        rows.append((path.parent.name, report))
    head = ' | '.join(f'L{i}' for i in range(depth))
    vision = any(report.get('vision_only') for _, report in rows)
    lines = ['| task | ' + ('vision only | ' if vision else '') + head +
             ' | exit (readout) | anytime: acc / mean layers | ECE | model, first token |',
             '| --- |' + ' --- |' * (depth + 4 + vision)]
    for name, report in rows:
        chosen = report['chosen']
        cells = []
        for entry in report['per_layer']:
            value = f"{entry['selection']:.3f}"
            cells.append(f'**{value}**' if entry['layer'] == chosen['exit_layer'] else value)
        cells += [''] * (depth - len(cells))
        if vision:
            only = report.get('vision_only') or {}
            value = only.get('selection', only.get('mean'))
            cells.insert(0, f'{value:.3f}' if value is not None else '-')
        anytime = report.get('anytime') or {}
        anytime_cell = (f"{anytime['accuracy']:.3f} / {anytime['mean_layers']:.2f}"
                        if anytime else '-')
        baseline = report.get('baseline')
        model_cell = f"{baseline['accuracy']:.3f}" if baseline else '-'
        lines.append(f'| {name} | ' + ' | '.join(cells) +
                     f" | {chosen['exit_layer']} ({_readout(chosen)}) | {anytime_cell} | "
                     f"{chosen['ece']:.3f} | {model_cell} |")
    return '\n'.join(lines)


def main(argv: list[str]) -> int:
    """Print the table named by argv[0]."""
    if not argv or argv[0] not in ('model', 'layers'):
        print(__doc__, file=sys.stderr)
        return 2
    kind, rest = argv[0], [Path(a) for a in argv[1:]]
    if kind == 'model':
        print(model_table(rest[0] if rest else DATA / 'demo_model'))
    else:
        print(layers_table(rest[0] if rest else DATA / 'demo_profiles'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
