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
Reports: the calibration report as JSON, a PNG plot and text tables; the evaluation table.

Everything here reads the plain JSON data that :func:`~superneuron_ros.method.calibrate.calibrate`
and :func:`~superneuron_ros.lab.evaluate.evaluate` return, so a saved report.json can be plotted
and printed again later.
"""

import math
from pathlib import Path
from typing import Any, Mapping

from superneuron_ros.jsonio import write_json
from superneuron_ros.method.calibrate import REPORT_JSON


REPORT_PNG = 'report.png'


def write_report(report: Mapping[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write report.json and report.png into `directory`; return both paths."""
    directory = Path(directory)
    return (write_json(report, directory / REPORT_JSON),
            plot_calibration(report, directory / REPORT_PNG))


def _fmt(value: Any, width: int = 7) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'.rjust(width)
    return f'{value:.3f}'.rjust(width)


def _metric_name(report: Mapping[str, Any]) -> str:
    return 'accuracy' if report['search']['metric'] == 'accuracy' else 'balanced accuracy'


def format_calibration_table(report: Mapping[str, Any]) -> str:
    """Return the per-layer held-out table of a calibration report, with the choice marked."""
    chosen, options = report['chosen'], report['options']
    sites = report['search']['sites']
    combos = list(sites) + (['+'.join(sites)] if len(sites) > 1 else [])
    ks = [str(k) for k in options['report_k']]
    data = report['data']
    lines = [
        f"task {report['task']['name']}: {data['num_examples']} examples "
        f"({data['num_probe']} probe, {data['num_heldout']} held-out), "
        f"{report['search']['scalars']:,} scalars in layers 0..{report['search']['layers'][-1]}",
        f'held-out {_metric_name(report)} per exit layer (neurons from layers 0..L); '
        f"single: the best-ranked scalar of layer L alone; chance {data['chance']:.3f}",
    ]
    head = ['layer'] + [f'single {s[:3]}' for s in sites]
    head += [f"{chosen['sites']} k={k}" if i == 0 else f'k={k}' for i, k in enumerate(ks)]
    head += [f"{c} k={options['k']}" for c in combos if c != chosen['sites']]
    other = report['per_layer'][0]['other_vote']['vote']
    head.append(f"{other} vote k={options['k']}")
    widths = [max(7, len(h)) for h in head]
    lines.append('  '.join(h.rjust(w) for h, w in zip(head, widths)))
    for entry in report['per_layer']:
        cells = [str(entry['layer'])]
        cells += [_fmt(entry['single'][s]['heldout']).strip() for s in sites]
        cells += [_fmt(entry['ensembles'][chosen['sites']][k]).strip() for k in ks]
        cells += [_fmt(entry['ensembles'][c][str(options['k'])]).strip()
                  for c in combos if c != chosen['sites']]
        cells.append(_fmt(entry['other_vote']['score']).strip())
        mark = '  <- exit' if entry['layer'] == chosen['exit_layer'] else ''
        lines.append('  '.join(c.rjust(w) for c, w in zip(cells, widths)) + mark)
    lines.append(
        f"chosen: exit layer {chosen['exit_layer']} ({chosen['mode']}; best layer "
        f"{chosen['best_layer']} at {chosen['best_score']:.3f}, tolerance "
        f"{chosen['tolerance']}), k={chosen['k']} from {chosen['sites']}, {chosen['vote']} "
        f"vote: held-out accuracy {chosen['accuracy']:.3f}, balanced "
        f"{chosen['balanced_accuracy']:.3f}")
    baseline = report.get('baseline')
    if baseline:
        lines.append('full model, first token restricted to the labels: held-out accuracy '
                     f"{baseline['accuracy']:.3f}, balanced {baseline['balanced_accuracy']:.3f}")
    else:
        lines.append(f"full model baseline: skipped, {report.get('baseline_skipped')}")
    timing = report['timing_s']
    lines.append(f"time: capture {timing['capture']:.1f} s, fit {timing['fit']:.1f} s, "
                 f"baseline {timing['baseline']:.1f} s, total {timing['total']:.1f} s; "
                 f"activations {report['activation_bytes'] / 2 ** 20:.1f} MiB")
    return '\n'.join(lines)


def plot_calibration(report: Mapping[str, Any], path: str | Path) -> Path:
    """Plot held-out scores per layer (ensemble, single scalar, baseline, exit) as a PNG."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib.figure import Figure

    chosen, options = report['chosen'], report['options']
    entries = report['per_layer']
    layers = [e['layer'] for e in entries]
    k, combo = str(options['k']), chosen['sites']
    figure = Figure(figsize=(7.5, 4.5), dpi=100)
    axes = figure.add_subplot()

    def series(values: list[Any]) -> list[float]:
        return [float('nan') if v is None else v for v in values]

    axes.plot(layers, series([e['ensembles'][combo][k] for e in entries]), 'o-', lw=2,
              color='tab:blue', label=f'ensemble, k={k} ({combo})')
    if '1' in entries[0]['ensembles'][combo]:
        axes.plot(layers, series([e['ensembles'][combo]['1'] for e in entries]), 's--',
                  color='tab:orange', label='best single scalar (layers 0..L)')
    axes.plot(layers, series([max((e['single'][s]['heldout'] or 0.0) for s in e['single'])
                              for e in entries]), ':', color='tab:orange', alpha=0.7,
              label='best single scalar of layer L')
    for site, colour in (('residual', 'tab:green'), ('mlp', 'tab:purple')):
        if site != combo and site in entries[0]['ensembles']:
            axes.plot(layers, series([e['ensembles'][site][k] for e in entries]), '-',
                      lw=1, alpha=0.6, color=colour, label=f'ensemble, k={k} ({site} only)')
    other = entries[0]['other_vote']['vote']
    axes.plot(layers, series([e['other_vote']['score'] for e in entries]), '--', lw=1,
              color='tab:blue', alpha=0.6, label=f'ensemble, k={k} ({combo}, {other} vote)')
    baseline = report.get('baseline')
    if baseline:
        axes.axhline(baseline['accuracy'], color='tab:red', ls='--',
                     label='full model, first token (restricted)')
    axes.axhline(report['data']['chance'], color='grey', ls=':', lw=1, label='chance')
    tolerance = chosen['tolerance']
    axes.axhspan(chosen['best_score'] - tolerance, chosen['best_score'], color='tab:blue',
                 alpha=0.08, label=f'within tolerance {tolerance} of the best')
    axes.axvline(chosen['exit_layer'], color='black', lw=1, alpha=0.6)
    axes.annotate(f"exit layer {chosen['exit_layer']}", (chosen['exit_layer'], 0.02),
                  xycoords=('data', 'axes fraction'), xytext=(4, 0), textcoords='offset points')
    axes.set_xticks(layers)
    axes.set_xlabel('exit layer L (decoder layers 0..L)')
    axes.set_ylabel(f'held-out {_metric_name(report)}')
    axes.set_ylim(min(0.4, report['data']['chance'] - 0.05), 1.02)
    axes.set_title(f"{report['task']['name']}: {report['fingerprint']['architecture']}, "
                   f"{report['fingerprint']['quantization']}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc='lower right')
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format='png')
    return path


def format_evaluation_table(result: Mapping[str, Any]) -> str:
    """Return the evaluation's accuracy / latency table and its confusion matrices as text."""
    labels = list(result['task']['labels'])
    lines = [f"eval {result['task']['name']} on {result['num_examples']} examples "
             f"({result['quantization']}, chance {result['chance']:.3f}); latency per image, "
             f"speed-up against {result['speedup_reference']}"]
    width = max(len(m['description']) for m in result['methods'])
    head = ['method'.ljust(width), 'accuracy', 'balanced', 'mean ms', 'p50 ms', 'p90 ms',
            'speed-up', 'none']
    lines.append('  '.join(head))
    for m in result['methods']:
        lat = m['latency_ms']
        lines.append('  '.join([
            m['description'].ljust(width), _fmt(m['accuracy'], 8), _fmt(m['balanced_accuracy'], 8),
            f"{lat['mean']:7.1f}", f"{lat['p50']:6.1f}", f"{lat['p90']:6.1f}",
            f"{m['speedup']:7.2f}x", f"{m['unmapped']:4d}"]))
    for method, reason in (result.get('skipped') or {}).items():
        lines.append(f'{method}: skipped, {reason}')
    lines.append('confusion (rows: true label; columns: predicted, then none)')
    cols = labels + ['none']
    cell = max(5, *(len(c) for c in cols))
    for m in result['methods']:
        lines.append(f"  {m['description']}")
        lines.append('    ' + ' ' * cell + ' '.join(c.rjust(cell) for c in cols))
        for label, row in zip(labels, m['confusion']):
            lines.append('    ' + label.rjust(cell) + ' '.join(str(v).rjust(cell) for v in row))
    return '\n'.join(lines)
