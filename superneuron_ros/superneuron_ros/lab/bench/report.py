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
The report: the issue's targets checked against the figures, a plain-text table, the JSON file.

Targets are reported, never asserted: each gets its measured value, its limit, whether it applies
to this run (model shape, exit layer, device) and whether it is met. The JSON file is written by
:func:`superneuron_ros.jsonio.write_json`.
"""

from typing import Any, Callable

GIB = float(2 ** 30)


def _get(data: Any, *keys: Any) -> Any:
    """Return data[k1][k2]... or None where any level is missing."""
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _is_shape(report: dict, family: str, num_layers: int) -> bool:
    model = report.get('model', {})
    return model.get('family') == family and model.get('num_layers') == num_layers


def _task_ratio(report: dict, k: int) -> float | None:
    for row in report.get('tasks') or []:
        if row['tasks'] == k:
            return row['shared/one_task']
    return None


def _anytime(report: dict, task: str, key: str) -> float | None:
    return _get(report, 'anytime', 'tasks', task, key)


# name, limit, 'min' (value >= limit) or 'max' (value <= limit), value, applies
TARGETS: list[tuple[str, float, str, Callable[[dict], Any], Callable[[dict], bool]]] = [
    ('(a)/(c) at L=1, Qwen2-VL-2B shape, CPU', 10.0, 'min',
     lambda r: _get(r, 'main', 'ratios', 'a/c', 'of_medians'),
     lambda r: (_is_shape(r, 'qwen2_vl', 28) and r['config']['exit_layer'] == 1
                and _get(r, 'machine', 'device') == 'cpu')),
    ('(c)/(d): super neurons over the floor', 1.2, 'max',
     lambda r: _get(r, 'main', 'ratios', 'c/d', 'of_medians'), lambda r: True),
    ('8 tasks on one frame over 1 task', 1.5, 'max', lambda r: _task_ratio(r, 8),
     lambda r: True),
    ('shallow task with deep profiles loaded over it loaded alone', 1.1, 'max',
     lambda r: _get(r, 'loaded', 'ratios', 'shallow: all loaded / alone loaded', 'of_medians'),
     lambda r: True),
    ('all loaded tasks in one call over the deepest alone', 1.3, 'max',
     lambda r: _get(r, 'loaded', 'ratios', 'all asked / deepest alone', 'of_medians'),
     lambda r: True),
    ('red_present accuracy on fresh scenes (anytime)', 0.99, 'min',
     lambda r: _anytime(r, 'red_present', 'accuracy'),
     lambda r: _get(r, 'model', 'family') == 'llava' and _get(r, 'model', 'num_layers') == 6),
    ('red_present mean layers run of 6 (anytime)', 4.5, 'max',
     lambda r: _anytime(r, 'red_present', 'mean_layers_run'),
     lambda r: _get(r, 'model', 'family') == 'llava' and _get(r, 'model', 'num_layers') == 6),
    ('resident parameters at L=1 over the full LLaVA-1.5-7B', 0.15, 'max',
     lambda r: _get(r, 'memory', 'meta', 'parameter_ratio'),
     lambda r: _is_shape(r, 'llava', 32) and r['config']['exit_layer'] == 1),
]


def evaluate_targets(report: dict) -> list[dict[str, Any]]:
    """Return each target with its value, limit, and whether it applies and is met."""
    rows = []
    for name, limit, sense, value_of, applies in TARGETS:
        value = value_of(report)
        met = None if value is None else (value >= limit if sense == 'min' else value <= limit)
        rows.append({'target': name, 'limit': limit, 'sense': sense, 'value': value,
                     'applies': bool(applies(report)), 'met': met})
    return rows


# ----------------------------------------------------------------------------- text


def _ms(value: float | None) -> str:
    if value is None:
        return '-'
    return f'{value:,.1f}' if value < 1e4 else f'{value:,.0f}'


def _x(value: float | None) -> str:
    return '-' if value is None else f'{value:.2f}x'


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return aligned lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return '  '.join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), '  '.join('-' * w for w in widths)] + [line(row) for row in rows]


PATH_NAMES = {'a_generate': '(a) full model, greedy generation',
              'b_prefill': '(b) full model, one prefill',
              'c_superneuron': '(c) super neurons, image to label',
              'd_floor': '(d) floor: vision + layers 0..L'}


def _main_lines(report: dict) -> list[str]:
    main = report['main']
    rows = []
    for key, name in PATH_NAMES.items():
        s = main['stats'].get(key)
        if s is not None:
            rows.append([name, _ms(s['median']), _ms(s['p25']), _ms(s['p75']), _ms(s['minimum']),
                         _ms(s['maximum']), str(s['n'])])
    lines = ['', f'Paths, {len(main["tasks"])} task(s) per frame (ms; '
             f'{"interleaved" if main.get("interleaved_with_full") else "(a), (b) timed apart"})']
    lines += _table(['path', 'median', 'p25', 'p75', 'min', 'max', 'n'], rows)
    ratios = main['ratios']
    lines.append('ratios of medians: ' + ', '.join(
        f'{name} {_x(r["of_medians"])}' + (f' (per repeat {r["paired_min"]:.2f}..'
                                           f'{r["paired_max"]:.2f})' if 'paired_min' in r else '')
        for name, r in ratios.items()))
    stages = main['c_stages']
    lines.append('(c) stages (median ms): ' + ', '.join(
        f'{k.replace("_ms", "")} {_ms(v)}' for k, v in stages.items()))
    if 'a_new_tokens' in main:
        lines.append(f'(a) generated {main["a_new_tokens"]:.0f} new token(s) per answer')
    return lines


def _sweep_lines(report: dict) -> list[str]:
    lines = []
    if report.get('layers'):
        lines += ['', 'Exit layer sweep (ms)']
        lines += _table(['exit layer', '(c)', '(d)', 'c/d', 'decoder'], [
            [str(r['exit_layer']), _ms(r['c']['median']), _ms(r['d']['median']),
             _x(r['c/d']), _ms(r['c_stages']['decoder_ms'])] for r in report['layers']])
    if report.get('sizes'):
        lines += ['', 'Vision side sweep: square frames of that side (ms)']
        lines += _table(['size', 'image tokens', 'prompt tokens', '(c)', '(d)', 'vision'], [
            [f'{r["image_size"][0]}x{r["image_size"][1]}', str(r['image_tokens']),
             str(r['prompt_tokens']), _ms(r['c']['median']), _ms(r['d']['median']),
             _ms(r['c_stages']['vision_ms'])] for r in report['sizes']])
    if report.get('tasks'):
        lines += ['', 'Tasks per frame (ms)']
        lines += _table(['tasks', 'one call', 'separate calls', 'separate/one call',
                         'one call / 1 task'], [
            [str(r['tasks']), _ms(r['shared']['median']), _ms(r['separate']['median']),
             _x(r['separate/shared']), _x(r['shared/one_task'])] for r in report['tasks']])
    return lines


def _loaded_lines(report: dict) -> list[str]:
    lines = []
    loaded = report.get('loaded')
    if loaded:
        names = {'shallow_alone_loaded': f'{loaded["shallow"]}, only its profile loaded',
                 'shallow_all_loaded': f'{loaded["shallow"]}, all {len(loaded["tasks"])} loaded',
                 'deepest_alone': f'{loaded["deepest"]} alone (all loaded)',
                 'all_asked': f'all {len(loaded["tasks"])} asked in one call'}
        lines += ['', 'Loaded profiles (exit layers: ' + ', '.join(
            f'{n} {layer}' for n, layer in loaded['tasks'].items()) + '; ms, interleaved)']
        lines += _table(['case', 'median', 'p25', 'p75', 'layers run'], [
            [label, _ms(loaded['stats'][key]['median']), _ms(loaded['stats'][key]['p25']),
             _ms(loaded['stats'][key]['p75']), str(loaded['layers_run'][key])]
            for key, label in names.items()])
        lines.append('ratios of medians: ' + ', '.join(
            f'{name} {_x(r["of_medians"])} (per repeat {r["paired_min"]:.2f}..'
            f'{r["paired_max"]:.2f})' for name, r in loaded['ratios'].items()))
    anytime = report.get('anytime')
    if anytime:
        lines += ['', f'Accuracy on {anytime["scenes"]} fresh scenes (one task per call; 95% '
                  'Wilson interval)']
        lines += _table(['task', 'n', 'accuracy', 'interval', 'readouts', 'mean layers run'], [
            [name, str(t['examples']), f'{t["accuracy"]:.3f}',
             f'{t["interval95"][0]:.3f}..{t["interval95"][1]:.3f}',
             ','.join(map(str, t['readout_layers'])), f'{t["mean_layers_run"]:.2f}']
            for name, t in anytime['tasks'].items()])
    return lines


def _memory_lines(report: dict) -> list[str]:
    meta = report['memory']['meta']
    lines = ['', f'Memory: parameters on the meta device (exit layer {meta["exit_layer"]})']
    rows = []
    for name in ('full', 'truncated'):
        m = meta[name]
        rows.append([name, f'{m["parameters"] / 1e6:,.1f} M', str(m['decoder_layers']),
                     f'{m["bytes_nf4"] / GIB:.2f}', f'{m["bytes_float16"] / GIB:.2f}',
                     f'{m["bytes_float32"] / GIB:.2f}'])
    lines += _table(['model', 'parameters', 'layers', 'nf4 GiB', 'fp16 GiB', 'fp32 GiB'], rows)
    lines.append(f'truncated / full: {meta["parameter_ratio"]:.1%} of the parameters, '
                 f'{meta["nf4_bytes_ratio"]:.1%} of the nf4 bytes')
    resident = report['memory'].get('resident')
    if resident:
        lines.append(f'resident ({report["model"]["quantization"]}): full '
                     f'{resident["full"]["bytes"] / GIB:.2f} GiB, truncated '
                     f'{resident["truncated"]["bytes"] / GIB:.2f} GiB; process peak RSS '
                     f'{resident["process_peak_rss_bytes"] / GIB:.2f} GiB')
    probes = report['memory'].get('probes')
    if probes:
        lines += ['', 'Peak memory, one model per process (GiB; RSS includes the baseline)']
        rows = []
        for p in probes:
            which = 'full' if p['exit_layer'] is None else f'0..{p["exit_layer"]}'
            if 'error' in p:
                rows.append([p['quantization'], which, '-', '-', '-', p['error'][:60]])
                continue
            cuda = p.get('cuda_peak_bytes') or {}
            answering = p.get('peak_pass_rss_bytes')
            rows.append([p['quantization'], which, f'{p["resident_bytes"] / GIB:.2f}',
                         f'{p["rss_baseline_bytes"] / GIB:.2f}',
                         f'{p.get("peak_load_rss_bytes", p["peak_rss_bytes"]) / GIB:.2f}',
                         '-' if answering is None else f'{answering / GIB:.2f}',
                         f'{cuda["allocated"] / GIB:.2f}' if cuda else '-'])
        lines += _table(['quant', 'layers', 'params', 'baseline RSS', 'peak loading',
                         'peak answering', 'CUDA peak'], rows)
    return lines


def _target_lines(report: dict) -> list[str]:
    lines = ['', 'Targets (reported, not asserted)']
    rows = []
    for t in report.get('targets', []):
        plain = 'layers' in t['target']  # a count, neither a share nor a ratio
        value = '-' if t['value'] is None else (
            f'{t["value"]:.2f}' if plain else
            f'{t["value"]:.1%}' if t['limit'] < 1 else f'{t["value"]:.2f}x')
        limit = f'{"<=" if t["sense"] == "max" else ">="} ' + (
            f'{t["limit"]:g}' if plain else
            f'{t["limit"]:.0%}' if t['limit'] < 1 else f'{t["limit"]:g}x')
        verdict = 'not measured' if t['met'] is None else ('met' if t['met'] else 'NOT met')
        if not t['applies']:
            verdict = f'n/a: other shape/layer/device ({verdict.lower()})'
        rows.append([t['target'], value, limit, verdict])
    return lines + _table(['target', 'value', 'limit', 'verdict'], rows)


def format_report(report: dict) -> str:
    """Return the report as plain-text tables."""
    model, machine = report['model'], report['machine']
    config = report['config']
    lines = [f'superneuron bench: {model.get("preset") or model.get("path")} ({model["family"]}, '
             f'{model["num_layers"]} layers), exit layer {config["exit_layer"]}, '
             f'{model["quantization"]}, {model["dtype"]}, {machine["device"]}',
             f'machine: {machine["cpu"]}, {machine["logical_cpus"]} CPUs, '
             f'{machine["torch_threads"]} torch threads, load average '
             f'{", ".join(f"{v:.2f}" for v in machine["load_average"])}'
             + (f' (after: {", ".join(f"{v:.2f}" for v in machine["load_average_after"])})'
                if 'load_average_after' in machine else '')]
    if 'image_size' in model:
        lines.append(f'frames {model["image_size"][0]}x{model["image_size"][1]} px: '
                     f'{model.get("image_tokens", "?")} image tokens, '
                     f'{model.get("prompt_tokens", "?")} prompt tokens')
    if 'main' in report:
        lines += _main_lines(report)
    lines += _sweep_lines(report)
    lines += _loaded_lines(report)
    lines += _memory_lines(report)
    if report.get('torch_profile'):
        lines += ['', 'Top operators of one super-neuron answer (torch.profiler)']
        lines += _table(['operator', 'calls', 'self CPU ms', 'CPU total ms'], [
            [e['name'][:48], str(e['calls']), _ms(e['self_cpu_ms']), _ms(e['cpu_total_ms'])]
            for e in report['torch_profile']])
    lines += _target_lines(report)
    if 'seconds' in report:
        lines += ['', f'took {report["seconds"]:.0f} s']
    return '\n'.join(lines)
