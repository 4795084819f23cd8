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


def _ms(cell: Mapping[str, Any] | None) -> str:
    return '-' if not cell else f"{cell['mean']:.3f}+-{cell['std']:.3f}"


def format_calibration_table(report: Mapping[str, Any]) -> str:
    """Return the per-layer cross-validated table of a calibration report, the choice marked."""
    chosen, options = report['chosen'], report['options']
    data, search = report['data'], report['search']
    sizes = [f'm{m}' for m in options['sizes']]
    lines = [
        f"task {report['task']['name']}: {data['num_examples']} examples, "
        f"{search['scalars']:,} scalars in layers 0..{search['layers'][-1]}; "
        f"{search['protocol']}",
        f'{_metric_name(report)} per layer, mean+-std over folds (readouts over layers 0..L; '
        f"ceiling: linear over every scalar of layer L alone); chance {data['chance']:.3f}",
    ]
    head = ['layer', f"vote k={options['k']}", 'linear', *sizes, 'ceiling', 'chosen', 'ece',
            'anytime thr']
    vision = report.get('vision_only')
    entries = ([vision] if vision else []) + list(report['per_layer'])
    rows = []
    for entry in entries:
        r = entry['readouts']
        chosen_kind = entry['chosen']
        thr = entry.get('anytime_threshold')
        rows.append([str(entry['layer']), _ms(r.get('vote')), _ms(r.get('linear'))]
                    + [_ms(r.get(m)) for m in sizes]
                    + [_ms(r.get('ceiling')), chosen_kind, f"{r[chosen_kind]['ece']:.3f}",
                       '-' if thr is None else f'{thr:.3f}'])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines.append('  '.join(h.rjust(w) for h, w in zip(head, widths)))
    for entry, row in zip(entries, rows):
        mark = '  <- exit' if entry['layer'] == chosen['exit_layer'] else ''
        lines.append('  '.join(c.rjust(w) for c, w in zip(row, widths)) + mark)
    if vision:
        verdict = vision.get('note') or (f"the exit layer adds {vision['gap']:.3f} over it "
                                         '(more than the tolerance): it needs the language layers')
        lines.append(f"vision: the same readouts on the {vision['features']} ({vision['size']} "
                     f"values, no question, no decoder layer): {vision['selection']:.3f}+-"
                     f"{vision['selection_std']:.3f}; {verdict}")
    lines.append(
        f"chosen: exit layer {chosen['exit_layer']} ({chosen['mode']}; best layer "
        f"{chosen['best_layer']} at {chosen['best_score']:.3f}, tolerance "
        f"{chosen['tolerance']}), {chosen['readout']} readout over {chosen['num_neurons']} "
        f"scalars: {chosen['accuracy']:.3f}+-{chosen['accuracy_std']:.3f}, expected "
        f"calibration error {chosen['ece']:.3f}")
    anytime = report['anytime']
    lines.append(f"anytime (readouts at layers {chosen['anytime_layers'] or 'none'} before the "
                 f"exit): accuracy {anytime['accuracy']:.3f}, mean decoder layers run "
                 f"{anytime['mean_layers']:.2f} of {chosen['exit_layer'] + 1}")
    baseline = report.get('baseline')
    if baseline:
        lines.append('full model, first token restricted to the labels: accuracy '
                     f"{baseline['accuracy']:.3f} on all {baseline['num_examples']} examples")
    else:
        lines.append(f"full model baseline: skipped, {report.get('baseline_skipped')}")
    test = report.get('test')
    if test:
        lines.append(f"test set ({test['num_examples']} examples, scored once): fixed exit "
                     f"{test['fixed']['accuracy']:.3f} (ECE {test['fixed']['ece']:.3f}), anytime "
                     f"{test['anytime']['accuracy']:.3f} at {test['anytime']['mean_layers']:.2f} "
                     'layers' + (f", model {test['baseline']['accuracy']:.3f}"
                                 if test.get('baseline') else ''))
    cost = report.get('cost_ms')
    if cost:
        size = report.get('image_size')
        where = 'the default size' if not size else f'{size[0]}x{size[1]}'
        lines.append(f"cost per image at {where} ({cost['image_tokens']} image tokens; median of "
                     f"{cost['images']}): "
                     f"vision {cost['vision']:.1f} ms, decoder to layer {chosen['exit_layer']} "
                     f"{cost['decoder']:.1f} ms")
    resolutions = report.get('resolutions')
    if resolutions:
        lines.append(format_resolution_table(resolutions))
    timing = report['timing_s']
    lines.append(f"time: capture {timing['capture']:.1f} s, search {timing['search']:.1f} s, "
                 f"total {timing['total']:.1f} s; activations "
                 f"{report['activation_bytes'] / 2 ** 20:.1f} MiB (float32), peak RSS "
                 f"{report['peak_rss_mib']:.0f} MiB")
    return '\n'.join(lines)


def format_resolution_table(resolutions: Mapping[str, Any]) -> str:
    """Return the comparison of vision sides: one row per side, the kept one marked."""
    head = ['side', 'image size', 'image tokens', 'exit', 'readout', 'CV mean+-std',
            'vision ms', 'decoder ms', 'total ms']
    rows = [[str(r['vision_side']), 'x'.join(map(str, r['image_size'])), str(r['image_tokens']),
             str(r['exit_layer']), r['readout'], f"{r['accuracy']:.3f}+-{r['accuracy_std']:.3f}",
             f"{r['vision_ms']:.1f}", f"{r['decoder_ms']:.1f}", f"{r['total_ms']:.1f}"]
            for r in resolutions['rows']]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = [f"resolutions compared ({resolutions['rule']}):",
             '  '.join(h.rjust(w) for h, w in zip(head, widths))]
    for r, row in zip(resolutions['rows'], rows):
        mark = '  <- kept' if r['vision_side'] == resolutions['kept'] else ''
        lines.append('  '.join(c.rjust(w) for c, w in zip(row, widths)) + mark)
    return '\n'.join(lines)


def plot_calibration(report: Mapping[str, Any], path: str | Path) -> Path:
    """Plot cross-validated scores per layer and the exit readout's reliability diagram."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib.figure import Figure

    chosen, options = report['chosen'], report['options']
    entries = report['per_layer']
    layers = [e['layer'] for e in entries]
    figure = Figure(figsize=(11, 4.5), dpi=100)
    axes, rel = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)

    def series(name: str) -> tuple[list[float], list[float]]:
        cells = [e['readouts'].get(name) for e in entries]
        return ([float('nan') if c is None else c['mean'] for c in cells],
                [0.0 if c is None else c['std'] for c in cells])

    for name, style, label in (('vote', 'o-', f"vote of {options['k']} 1-D classifiers"),
                               ('linear', 's-', 'linear readout (m by inner CV)'),
                               ('ceiling', '^:', 'ceiling: linear over all of layer L')):
        mean, std = series(name)
        axes.errorbar(layers, mean, yerr=std, fmt=style, capsize=3, label=label)
    baseline = report.get('baseline')
    if baseline:
        axes.axhline(baseline['accuracy'], color='tab:red', ls='--',
                     label='full model, first token (restricted)')
    vision = report.get('vision_only')
    if vision:
        axes.axhline(vision['selection'], color='tab:green', ls='-.',
                     label=f"vision only ({vision['chosen']}): no decoder layer")
    axes.axhline(report['data']['chance'], color='grey', ls=':', lw=1, label='chance')
    tolerance = chosen['tolerance']
    axes.axhspan(chosen['best_score'] - tolerance, chosen['best_score'], color='tab:blue',
                 alpha=0.08, label=f'within tolerance {tolerance} of the best')
    axes.axvline(chosen['exit_layer'], color='black', lw=1, alpha=0.6)
    axes.set_xticks(layers)
    axes.set_xlabel('exit layer L (decoder layers 0..L)')
    axes.set_ylabel(f'cross-validated {_metric_name(report)}')
    axes.set_ylim(min(0.4, report['data']['chance'] - 0.05), 1.02)
    axes.set_title(f"{report['task']['name']}: {report['fingerprint']['architecture']}, "
                   f"{report['fingerprint']['quantization']}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc='lower right')
    bins = report['reliability']
    centres = [(i + 0.5) / bins['bins'] for i in range(bins['bins'])]
    acc = [float('nan') if a is None else a for a in bins['accuracy']]
    rel.bar(centres, acc, width=0.9 / bins['bins'], alpha=0.7, label='out-of-fold accuracy')
    rel.plot([0, 1], [0, 1], 'k--', lw=1, label='perfect calibration')
    rel.set_xlabel(f"confidence (exit layer {chosen['exit_layer']}, {chosen['readout']})")
    rel.set_ylabel('accuracy')
    rel.set_title(f"reliability: ECE {bins['ece']:.3f}")
    rel.set_xlim(0, 1)
    rel.set_ylim(0, 1.02)
    rel.legend(fontsize=7, loc='upper left')
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
    head = ['method'.ljust(width), 'accuracy', '95% interval', 'balanced', 'mean ms', 'p50 ms',
            'p90 ms', 'speed-up', 'none']
    lines.append('  '.join(head))
    for m in result['methods']:
        lat = m['latency_ms']
        lo, hi = m.get('accuracy_ci95', (None, None))
        lines.append('  '.join([
            m['description'].ljust(width), _fmt(m['accuracy'], 8),
            f'[{_fmt(lo, 5)}, {_fmt(hi, 5)}]', _fmt(m['balanced_accuracy'], 8),
            f"{lat['mean']:7.1f}", f"{lat['p50']:6.1f}", f"{lat['p90']:6.1f}",
            f"{m['speedup']:7.2f}x", f"{m['unmapped']:4d}"]))
    readouts = result.get('readouts')
    if readouts:
        fixed, anytime = readouts['fixed'], readouts['anytime']
        lines.append(
            f"readouts (batched pass): fixed exit layer {fixed['exit_layer']} accuracy "
            f"{fixed['accuracy']:.3f} [{fixed['accuracy_ci95'][0]:.3f}, "
            f"{fixed['accuracy_ci95'][1]:.3f}], ECE {fixed['ece']['ece']:.3f}; anytime (layers "
            f"{anytime['layers']}) {anytime['accuracy']:.3f} [{anytime['accuracy_ci95'][0]:.3f}, "
            f"{anytime['accuracy_ci95'][1]:.3f}], ECE {anytime['ece']['ece']:.3f}, mean "
            f"{anytime['mean_layers']:.2f} decoder layers")
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
