"""The speed tables of docs/performance.md, generated from the results files.

    python benchmarks/speed_tables.py           # rewrite the generated sections
    python benchmarks/speed_tables.py --check   # exit 1 if one of them is out of date

Each table reads ``docs/results/speed_<benchmark>_<machine>.json`` files that ``speed.py`` and
``train_iteration.py`` wrote (through ``benchmarks/cpu_rows.sh`` and ``benchmarks/cuda_rows.sh``),
names the machine and the file of every row, and shows what the file holds: ratios SAN / plain
(medians of the rounds; for ``--processes N`` files the median over processes and their range)
with the median times. A table whose file is missing says so in its row. Each table comes after
the command that measures it.
"""
import argparse
import json
import os.path as osp
import re
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from generated_sections import (replace_section, section_names,  # noqa: E402
                                write_section)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(REPO, 'docs', 'results')
DOCUMENT = osp.join(REPO, 'docs', 'performance.md')
COMMAND = 'python benchmarks/speed_tables.py'

ARCHS = dict(resnet18='ResNet-18', resnet50='ResNet-50',
             mobilenetv2='MobileNetV2')
CPU_COLUMNS = [(arch, size) for arch in ARCHS for size in (224, 160, 96)]
GPU_COLUMNS = [(arch, size) for arch in ARCHS for size in (224, 96)]
COMPILED_COLUMNS = [(arch, size) for arch in ('resnet18', 'mobilenetv2')
                    for size in (224, 96)]
PRECISIONS = ('fp32', 'fp16', 'bf16')

# (what, results file, row kind: speed.py's row name up to the architecture,
# batch); the A/A control row of a kind follows it in the table
INFERENCE_CPU = [
    ('batch 1', 'speed_inference_epyc_cpu.json', 'inference', 1),
    ('batch 32', 'speed_inference_b32_epyc_cpu.json', 'inference', 32),
    ('batch 1, regenerating every kernel vs cached', 'speed_inference_epyc_cpu.json',
     'regenerate-every-forward vs cached', 1),
]
COMPILED_CPU = [
    ('inductor freezing, guards evaluated on every call', 'speed_compiled_epyc_cpu.json',
     'compiled+frozen', 1),
    ('inductor freezing, guards skipped after warm-up', 'speed_compiled_epyc_cpu.json',
     'compiled+frozen skip-guard-eval', 1),
]
BATCH1_GPU = [
    ('CUDA graph of the eager forward', 'speed_cudagraph_h100_cuda.json', 'cuda graph', 1),
    ('CUDA graph of the eager forward', 'speed_cudagraph_h200_cuda.json', 'cuda graph', 1),
    ('`torch.compile`, reduce-overhead, frozen', 'speed_compiled_h200_cuda.json',
     'compiled+frozen reduce-overhead', 1),
    ('eager', 'speed_inference_h100_cuda.json', 'inference', 1),
    ('eager, regenerating every kernel vs cached', 'speed_inference_h100_cuda.json',
     'regenerate-every-forward vs cached', 1),
]
TRAIN_CPU = 'speed_train_epyc_cpu.json'
PIPELINE_CPU = 'speed_pipeline_epyc_cpu.json'
TRAIN_GPU = [('eager', 'speed_train_h100_cuda.json'),
             ('eager', 'speed_train_h200_cuda.json'),
             ('CUDA graphs', 'speed_train_graphed_h200_cuda.json')]
FMNIST_GPU = ['speed_fmnist_iteration_h100_cuda.json',
              'speed_fmnist_iteration_h200_cuda.json']
FMNIST_VARIANTS = {
    'eager': 'eager',
    'compile': '`compile=True` (the backbone, per size)',
    'reduce-overhead': '`compile.mode=reduce-overhead` (CUDA graphs per size)',
    'batched-kernels': '`model.batch_kernel_generation=True`',
    'cuda-graph': '**`--cuda-graph`** (the whole step in one CUDA graph)',
    'cuda-graph-batched': '`--cuda-graph` with batched kernel generation',
}

SIZED_ROW = re.compile(r'^(?P<kind>.*?),? ?(?P<arch>' + '|'.join(ARCHS)
                       + r') r=(?P<size>\d+) b=(?P<batch>\d+)$')
TRAIN_ROW = re.compile(r'^train step (?P<arch>\w+) K=\d+ b=(?P<batch>\d+) '
                       r'(?:(?P<precision>fp32|fp16|bf16) )?(?:cuda graph )?'
                       r'(?P<mode>.+)$')
BATCHED_ROW = re.compile(r'^batched vs per-size kernels, joint backward '
                         r'(?P<arch>\w+) b=\d+ (?P<precision>fp32|fp16|bf16)')
# what a CPU machine's description names where /proc/cpuinfo has no model
# (processor_name's fallbacks): the architecture, which does not tell one
# CPU machine from another
ARCHITECTURE_NAMES = ('x86_64', 'aarch64', 'arm64', 'arm', 'amd64', 'i386',
                      'i686', 'ppc64le', 's390x', '')


def load(name):
    """The results file ``name``, or None where it does not exist (yet)."""
    path = osp.join(RESULTS, name)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def runs(data):
    """The runs a results file holds: its own, or those it lists (``runs``:
    one benchmark measured in several runs, e.g. fp32 then AMP)."""
    return data.get('runs', [data])


def card(machine):
    """The machine of a row: the GPU ('H200'), or 'CPU (AMD EPYC)' where
    the file names the processor's model, else 'CPU'. ``machine`` is
    san_mm.analysis.timing.machine_info's dict, or, in older files, a
    string 'MODEL, N CPU cores, torch ..., NVIDIA H200'."""
    if isinstance(machine, dict):
        gpu = re.search(r'NVIDIA (\w+)', machine.get('device', ''))
        model = machine.get('processor', '')
    else:
        gpu = re.search(r'NVIDIA (\w+)', machine or '')
        model = (machine or '').split(',')[0].strip()
    if gpu:
        return gpu.group(1)
    return 'CPU' if model.lower() in ARCHITECTURE_NAMES else f'CPU ({model})'


def source(data, name):
    """A row's 'machine, file' cell: 'H200, `speed_x.json`' (and how many
    processes, for a ``--processes N`` file)."""
    processes = len(data['processes']) if 'processes' in data else None
    return f'{card(runs(data)[0].get("machine"))}, `{name}`' + (
        f', {processes} processes' if processes else '')


def missing(name):
    return f'not measured yet: no `{name}`'


def entries(data):
    """The rows of a results file, each ``dict(name, ratio, ratios, san,
    plain)``: one process's rows (``ratios`` None; ``san`` / ``plain`` its
    median seconds), or for ``--processes N`` the summary (the median ratio,
    every process's ratio, and the median over processes of each side's
    median time)."""
    if 'summary' not in data:
        return [dict(name=row['name'], ratio=row['ratio'], ratios=None,
                     san=row['san']['median'], plain=row['plain']['median'])
                for run in runs(data) for row in run['rows']]
    per_name = {}
    for rows in data['processes']:
        for row in rows:
            per_name.setdefault(row['name'], []).append(row)
    return [dict(name=entry['name'], ratio=entry['median_ratio'],
                 ratios=entry['ratios'],
                 **{side: statistics.median(row[side]['median']
                                            for row in per_name[entry['name']])
                    for side in ('san', 'plain')})
            for entry in data['summary']]


def sized_rows(data, kind, batch):
    """``{(arch, size): (entry, its A/A control entry or None)}`` of the
    entries of ``kind`` at ``batch`` (a control row follows the row it
    controls)."""
    found, last = {}, None
    for entry in entries(data):
        name = entry['name'].strip()
        if name.startswith('control:'):
            if last is not None:
                found[last] = (found[last][0], entry)
            last = None
            continue
        match = SIZED_ROW.match(name)
        last = None
        if match and int(match['batch']) == batch and match['kind'] == kind:
            last = (match['arch'], int(match['size']))
            found[last] = (entry, None)
    return found


def ms(seconds):
    """Milliseconds to three significant digits (what the rounds resolve)."""
    value = seconds * 1e3
    return f'{value:.0f}' if value >= 100 else f'{value:#.3g}'


def ratio_cell(entry, times=None):
    """'1.007', with the range over processes '[1.000–1.020]' when there
    were several, and the median times (``times``: 'san' or 'both')."""
    cell = f'{entry["ratio"]:.3f}'
    if entry['ratios'] and len(entry['ratios']) > 1:
        cell += f' [{min(entry["ratios"]):.3f}–{max(entry["ratios"]):.3f}]'
    if times == 'san':
        cell += f' ({ms(entry["san"])})'
    elif times == 'both':
        cell += f' ({ms(entry["san"])} / {ms(entry["plain"])} ms)'
    return cell


def table_row(cells):
    return '| ' + ' | '.join(cells) + ' |'


def grid_table(title, columns, specs, times=None):
    """A row per spec (what, file, kind, batch) and, under it, its A/A
    control's and, for ``--processes N`` files, SAN / control (the median
    over processes of each process's SAN / plain divided by its control /
    plain); a column per (architecture, size)."""
    lines = [table_row([title, 'machine, file'] +
                       [f'{ARCHS[a]} r={s}' for a, s in columns]),
             '|---|---|' + '---|' * len(columns)]
    for what, name, kind, batch in specs:
        data = load(name)
        if data is None:
            lines.append(table_row([what, missing(name)] + [''] * len(columns)))
            continue
        found = sized_rows(data, kind, batch)
        cells = [ratio_cell(found[c][0], times) if c in found else ''
                 for c in columns]
        lines.append(table_row([what, source(data, name)] + cells))
        controls = [found[c][1] if c in found else None for c in columns]
        if not any(controls):
            continue
        lines.append(table_row(['A/A control (plain copy / plain)', ''] + [
            ratio_cell(control) if control else '' for control in controls]))
        if 'processes' not in data:
            continue
        against = []
        for c, control in zip(columns, controls):
            if control is None:
                against.append('')
                continue
            per_process = [s / k for s, k in zip(found[c][0]['ratios'],
                                                 control['ratios'])]
            against.append(f'{statistics.median(per_process):.3f}')
        lines.append(table_row(['SAN / A/A control', ''] + against))
    return '\n'.join(lines)


def with_command(command, table):
    """``table`` after the command that measures its rows."""
    return f'```bash\n{command}\n```\n\n{table}'


def inference_cpu_table():
    return with_command(
        'bash benchmarks/cpu_rows.sh inference inference-b32',
        grid_table('eval forward, cached kernels: SAN / plain [range over processes]',
                   CPU_COLUMNS, INFERENCE_CPU))


def compiled_cpu_table():
    return with_command(
        'bash benchmarks/cpu_rows.sh compiled',
        grid_table('batch 1, compiled SAN / compiled plain [range over processes] '
                   '(median ms)', COMPILED_COLUMNS, COMPILED_CPU, times='both'))


def train_cpu_table():
    lines = ['| five sizes, batch 8: SAN step / five plain steps | machine, file | time '
             '(SAN / plain ms) | peak activation memory vs the largest plain step |',
             '|---|---|---|---|']
    data = load(TRAIN_CPU)
    if data is None:
        lines.append(table_row(['', missing(TRAIN_CPU), '', '']))
    else:
        where = source(data, TRAIN_CPU)
        for row in data['rows']:
            name = row['name'].strip()
            entry = dict(name=name, ratio=row['ratio'], ratios=None,
                         san=row['san']['median'], plain=row['plain']['median'])
            match, batched = TRAIN_ROW.match(name), BATCHED_ROW.match(name)
            if batched:
                what = (f'{ARCHS.get(batched["arch"], batched["arch"])}, batched / per-size '
                        'kernel generation, joint (SAN vs SAN)')
            else:
                what = f'{ARCHS.get(match["arch"], match["arch"])}, {match["mode"]}'
            memory = row.get('memory')
            cell = (f'{memory["ratio"]:.3f}× ({memory["san"] / 2**20:.0f} vs '
                    f'{memory["plain"] / 2**20:.0f} MiB)') if memory else ''
            lines.append(table_row([what, where, ratio_cell(entry, 'both'), cell]))
    return with_command('bash benchmarks/cpu_rows.sh train', '\n'.join(lines))


def pipeline_cpu_table():
    lines = ['| training pipeline, one process | machine, file | SAN ms per image | plain ms per '
             'image | SAN / one plain pipeline | SAN / K plain pipelines |',
             '|---|---|---|---|---|---|']
    data = load(PIPELINE_CPU)
    if data is None:
        lines.append(table_row(['', missing(PIPELINE_CPU), '', '', '', '']))
    else:
        for row in data['rows']:
            sizes = row['sizes']
            lines.append(table_row([
                f'{row["case"]}: ResolutionSample ({len(sizes)} sizes, {sizes[0]}...{sizes[-1]}) '
                f'vs RandomResizedCrop + flip ({sizes[0]})', source(data, PIPELINE_CPU),
                f'{row["ms_per_image"]["san"]:.3f}', f'{row["ms_per_image"]["plain"]:.3f}',
                f'{row["ratio"]:.2f}', f'{row["against_k_plain"]:.2f} (K = {len(sizes)})']))
    return with_command('bash benchmarks/cpu_rows.sh pipeline', '\n'.join(lines))


def gpu_batch1_table():
    return with_command(
        'bash benchmarks/cuda_rows.sh OUT_DIR inference cudagraph compiled',
        grid_table("batch 1, SAN / plain (SAN's median ms)", GPU_COLUMNS, BATCH1_GPU,
                   times='san'))


def gpu_train_table():
    lines = [table_row(['ResNet-50, batch 64, K = 5: SAN step / five plain steps',
                        'machine, file', *PRECISIONS]),
             '|---|---|' + '---|' * len(PRECISIONS)]
    for how, name in TRAIN_GPU:
        data = load(name)
        if data is None:
            lines.append(table_row([how, missing(name)] + [''] * len(PRECISIONS)))
            continue
        where = source(data, name)
        modes, batched = {}, {}
        for entry in entries(data):
            match = TRAIN_ROW.match(entry['name'].strip())
            if match:
                modes.setdefault(match['mode'], {})[match['precision']] = entry
                continue
            match = BATCHED_ROW.match(entry['name'].strip())
            if match:
                batched[match['precision']] = entry
        for mode, by_precision in modes.items():
            lines.append(table_row([f'{how}: {mode}', where] + [
                ratio_cell(by_precision[p], 'both') if p in by_precision else ''
                for p in PRECISIONS]))
        if batched:
            lines.append(table_row(
                [f'{how}: batched / per-size kernel generation, joint (SAN vs SAN)', where]
                + [ratio_cell(batched[p]) if p in batched else '' for p in PRECISIONS]))
    return with_command('bash benchmarks/cuda_rows.sh OUT_DIR train train-graphed',
                        '\n'.join(lines))


def gpu_fmnist_table():
    lines = ['| Fashion-MNIST SAN ResNet-18, batch 128 | machine, file | iteration | data wait '
             '| vs eager | first 10 iterations, per iteration |', '|---|---|---|---|---|---|']
    for name in FMNIST_GPU:
        data = load(name)
        if data is None:
            lines.append(table_row(['', missing(name), '', '', '', '']))
            continue
        for run in runs(data):
            where = f'{card(run["machine"])}, `{name}`'
            # tools/train.py --amp: mmengine's AmpOptimWrapper, fp16 autocast
            amp = ', `--amp` (fp16)' if '--amp' in run['command'].split() else ''
            for result in run['results']:
                if result.get('iteration_seconds') is None:
                    continue
                lines.append(table_row([
                    FMNIST_VARIANTS.get(result['variant'], result['variant']) + amp,
                    where, f'{result["iteration_seconds"] * 1e3:.1f} ms',
                    f'{result["data_seconds"] * 1e3:.1f} ms',
                    f'{result["speedup_over_eager"]:.2f}×',
                    f'{result["first_window_seconds"]:.2f} s']))
    return with_command('FMNIST_VARIANTS="eager cuda-graph reduce-overhead" '
                        'bash benchmarks/cuda_rows.sh OUT_DIR fmnist', '\n'.join(lines))


TABLES = {'speed-inference-cpu': inference_cpu_table,
          'speed-compiled-cpu': compiled_cpu_table,
          'speed-train-cpu': train_cpu_table,
          'speed-pipeline-cpu': pipeline_cpu_table,
          'speed-gpu-batch1': gpu_batch1_table,
          'speed-gpu-train': gpu_train_table,
          'speed-gpu-fmnist': gpu_fmnist_table}


def render(document):
    """``document`` with every section this script owns regenerated."""
    names = section_names(document, COMMAND)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise KeyError(f'sections {unknown} name no table of {COMMAND}; it '
                       f'makes {sorted(TABLES)}')
    for name in names:
        document = replace_section(document, name, COMMAND, TABLES[name]())
    return document


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a generated section is out of date')
    parser.add_argument('--document', default=DOCUMENT)
    args = parser.parse_args()
    with open(args.document) as f:
        names = section_names(f.read(), COMMAND)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        parser.error(f'{args.document}: sections {unknown} name no table of '
                     f'{COMMAND}; it makes {sorted(TABLES)}')
    current = [write_section(args.document, name, COMMAND, TABLES[name](),
                             check=args.check) for name in names]
    if args.check and not all(current):
        sys.exit(1)

if __name__ == '__main__':
    main()
