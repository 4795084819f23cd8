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
Gather several benchmark reports (and test results) into one JSON and one markdown table.

``python -m superneuron_ros.lab.bench.summary --out DIR report.json ... [--tests name=junit.xml]``
is what ``tools/gpu_check.sh`` runs at its end; the table holds, per run, the figures of the
issue's targets: (c), (d), (c)/(d), (a)/(c), K = 8 over one task, and the loaded-set ratios.
"""

import argparse
from pathlib import Path
import sys
from typing import Any, Sequence
import xml.etree.ElementTree as ElementTree

from superneuron_ros.jsonio import write_json


def _get(data: Any, *keys: Any) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _x(value: float | None) -> str:
    return '-' if value is None else f'{value:.2f}x'


def _ms(value: float | None) -> str:
    return '-' if value is None else f'{value:.1f}'


def run_row(report: dict[str, Any]) -> dict[str, Any]:
    """Return the figures of one benchmark report that the summary table shows."""
    k8 = next((row['shared/one_task'] for row in report.get('tasks') or []
               if row['tasks'] == 8), None)
    return {'model': report['model'].get('preset') or report['model'].get('path'),
            'family': report['model']['family'], 'quantization': report['model']['quantization'],
            'dtype': report['model']['dtype'], 'device': report['machine']['device'],
            'exit_layer': report['config']['exit_layer'],
            'c_ms': _get(report, 'main', 'stats', 'c_superneuron', 'median'),
            'd_ms': _get(report, 'main', 'stats', 'd_floor', 'median'),
            'c/d': _get(report, 'main', 'ratios', 'c/d', 'of_medians'),
            'a/c': _get(report, 'main', 'ratios', 'a/c', 'of_medians'),
            'k8/k1': k8,
            'shallow loaded': _get(report, 'loaded', 'ratios',
                                   'shallow: all loaded / alone loaded', 'of_medians'),
            'all/deepest': _get(report, 'loaded', 'ratios', 'all asked / deepest alone',
                                'of_medians')}


def junit_counts(path: Path) -> dict[str, int]:
    """Return tests, failures, errors and skipped of a pytest junit XML file."""
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == 'testsuite' else root.find('testsuite')
    return {key: int(suite.get(key, 0)) for key in ('tests', 'failures', 'errors', 'skipped')}


def markdown(rows: Sequence[dict[str, Any]], tests: dict[str, dict[str, int]],
             machine: str) -> str:
    """Return the markdown table of the runs, then the test counts."""
    lines = [f'Machine: {machine}', '',
             '| model | quant | dtype | device | (c) ms | (d) ms | (c)/(d) | (a)/(c) | K=8 / K=1 '
             '| shallow, all loaded / alone | all asked / deepest |',
             '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["quantization"]} | {r["dtype"]} | {r["device"]} | '
                     f'{_ms(r["c_ms"])} | {_ms(r["d_ms"])} | {_x(r["c/d"])} | {_x(r["a/c"])} | '
                     f'{_x(r["k8/k1"])} | {_x(r["shallow loaded"])} | {_x(r["all/deepest"])} |')
    if tests:
        lines += ['', '| tests | passed | failed | errors | skipped |',
                  '| --- | ---: | ---: | ---: | ---: |']
        for name, c in tests.items():
            passed = c['tests'] - c['failures'] - c['errors'] - c['skipped']
            lines.append(f'| {name} | {passed} | {c["failures"]} | {c["errors"]} | '
                         f'{c["skipped"]} |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    """Write summary.json and summary.md into --out from benchmark reports and junit files."""
    import json
    parser = argparse.ArgumentParser(description='summarise superneuron bench reports')
    parser.add_argument('reports', nargs='*', type=Path)
    parser.add_argument('--tests', action='append', default=[], metavar='NAME=JUNIT_XML')
    parser.add_argument('--failed', action='append', default=[], metavar='NAME',
                        help='a run that did not produce its report')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.reports if path.is_file()]
    tests = {}
    for item in args.tests:
        name, _, path = item.partition('=')
        if Path(path).is_file():
            tests[name] = junit_counts(Path(path))
        else:
            args.failed.append(f'tests {name}')
    machine = 'unknown'
    if reports:
        info = reports[0]['machine']
        machine = f'{info.get("cuda_device") or info["cpu"]} ({info["device"]}), torch ' \
                  f'{info["torch"]}, transformers {info["transformers"]}, bitsandbytes ' \
                  f'{info.get("bitsandbytes")}'
    rows = [run_row(report) for report in reports]
    args.out.mkdir(parents=True, exist_ok=True)
    write_json({'machine': machine, 'runs': rows, 'tests': tests, 'failed': args.failed,
                'reports': reports}, args.out / 'summary.json')
    text = markdown(rows, tests, machine)
    if args.failed:
        text += '\nDid not finish: ' + ', '.join(args.failed) + '\n'
    (args.out / 'summary.md').write_text(text, encoding='utf-8')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
