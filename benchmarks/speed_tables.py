"""The README's speed tables (CPU and GPU), generated from the results files.

    python benchmarks/speed_tables.py           # rewrite the README's generated sections
    python benchmarks/speed_tables.py --check   # exit 1 if one of them is out of date

Each table reads ``docs/results/speed_*.json`` files that ``speed.py`` and ``train_iteration.py``
wrote (on a GPU machine through ``benchmarks/cuda_rows.sh``), names the machine of every row (its
card, or CPU) and the file, and shows what the file holds: ratios SAN / plain (medians of the
rounds; for ``--processes N`` files the median over processes and their range) with the median
times. A new results file gets a line in the lists below; the README never gets a number by hand.
"""
import argparse
import json
import os.path as osp
import re
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from generated_sections import replace_section, section_names  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(REPO, 'docs', 'results')
README = osp.join(REPO, 'README.md')
COMMAND = 'python benchmarks/speed_tables.py'

ARCHS = dict(resnet18='ResNet-18', resnet50='ResNet-50',
             mobilenetv2='MobileNetV2')
ALL_COLUMNS = [(arch, size) for arch in ARCHS for size in (224, 96)]
CPU_COLUMNS = [(arch, size) for arch in ARCHS for size in (224, 160, 96)]
COMPILED_COLUMNS = [(arch, size) for arch in ('resnet18', 'mobilenetv2')
                    for size in (224, 96)]
# (what, results file, row kind: speed.py's row name up to the architecture,
# batch); the A/A control row of a kind follows it in the table
BATCH1_GPU = [
    ('CUDA graph of the eager forward', 'speed_inference_b1_cuda.json', 'cuda graph', 1),
    ('CUDA graph, second run', 'speed_cudagraph_b1_cuda.json', 'cuda graph', 1),
    ('CUDA graph', 'speed_cudagraph_b1_h200_cuda.json', 'cuda graph', 1),
    ('`torch.compile`, reduce-overhead, frozen', 'speed_compiled_h200_cuda.json',
     'compiled+frozen reduce-overhead', 1),
    ('eager', 'speed_inference_b1_cuda.json', 'inference', 1),
    ('eager, regenerating every kernel vs cached', 'speed_inference_b1_cuda.json',
     'regenerate-every-forward vs cached', 1),
]
INFERENCE_CPU = [
    ('batch 1', 'speed_inference_b1_cpu.json', 'inference', 1),
    ('batch 1, rerun of ResNet-18 at 96 px', 'speed_inference_b1_r18_96_cpu.json', 'inference', 1),
    ('batch 1 on a second, noisier machine', 'speed_inference_b1_epyc_cpu.json', 'inference', 1),
    ('batch 1, ResNet-18 at 96 px on a second, noisier machine',
     'speed_inference_b1_r18_96_epyc_cpu.json', 'inference', 1),
    ('batch 32', 'speed_inference_cpu.json', 'inference', 32),
    ('batch 1, regenerating every kernel vs cached', 'speed_inference_b1_cpu.json',
     'regenerate-every-forward vs cached', 1),
]
COMPILED_CPU = [
    ('`torch.compile`', 'speed_compiled_cpu.json', 'compiled', 1),
    ('+ inductor freezing', 'speed_compiled_cpu.json', 'compiled+frozen', 1),
    ('rerun: `torch.compile`', 'speed_aoti_cpu.json', 'compiled', 1),
    ('rerun: + inductor freezing', 'speed_aoti_cpu.json', 'compiled+frozen', 1),
    ('rerun: **torch.export + AOTInductor**', 'speed_aoti_cpu.json', 'aoti', 1),
    ('third run: + inductor freezing', 'speed_compiled_frozen_cpu.json', 'compiled+frozen', 1),
    ('fourth run: + inductor freezing', 'speed_compiled_steady_cpu.json', 'compiled+frozen', 1),
    ('fourth run: + freezing, **guards skipped** (steady state)', 'speed_compiled_steady_cpu.json',
     'compiled+frozen skip-guard-eval', 1),
    ('fifth run (compile order alternated): + freezing', 'speed_compiled_order_cpu.json',
     'compiled+frozen', 1),
    ('fifth run (compile order alternated): + freezing, **guards skipped**',
     'speed_compiled_order_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('sixth run: + freezing', 'speed_compiled_with_set_guards_cpu.json', 'compiled+frozen', 1),
    ("diagnosis, sixth run: + freezing, SAN compiled without its private BNs' set guards (unsafe)",
     'speed_compiled_without_set_guards_cpu.json',
     "compiled+frozen, SAN without its private BNs' sets (path and tensors) guards", 1),
    ('diagnosis, `MALLOC_MMAP_THRESHOLD_=131072`: + freezing', 'speed_compiled_steady_mmap_cpu.json',
     'compiled+frozen', 1),
    ('diagnosis, `MALLOC_MMAP_THRESHOLD_=131072`: + freezing, guards skipped',
     'speed_compiled_steady_mmap_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('seventh run, MobileNetV2 96: + freezing, **dict-tag guards**',
     'speed_compiled_dict_tags_mnv2_cpu.json', 'compiled+frozen', 1),
    ('seventh run, right after: + freezing, guards as by default',
     'speed_compiled_default_guards_mnv2_cpu.json', 'compiled+frozen', 1),
    ('eighth run: + freezing, **dict-tag guards**', 'speed_compiled_dict_tags_cpu.json',
     'compiled+frozen', 1),
    ('ninth run, MobileNetV2 alone (compile order alternated): + freezing, **dict-tag guards**',
     'speed_compiled_dict_tags_mnv2_10p_cpu.json', 'compiled+frozen', 1),
    ('ninth run, right after in each process: + freezing, guards skipped',
     'speed_compiled_dict_tags_mnv2_10p_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ("tenth run, SAN's whole backbone one skipped guard subtree: + freezing, **dict-tag guards**",
     'speed_compiled_backbone_root_mnv2_cpu.json', 'compiled+frozen', 1),
    ('tenth run, right after in each process: + freezing, guards skipped',
     'speed_compiled_backbone_root_mnv2_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('tenth run, ResNet-18 (four processes): + freezing, **dict-tag guards**',
     'speed_compiled_backbone_root_r18_cpu.json', 'compiled+frozen', 1),
    ('tenth run, ResNet-18, right after in each process: + freezing, guards skipped',
     'speed_compiled_backbone_root_r18_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('eleventh run, a second, noisier machine, MobileNetV2 alone (ninth protocol): + freezing, '
     '**dict-tag guards**', 'speed_compiled_dict_tags_mnv2_epyc_cpu.json', 'compiled+frozen', 1),
    ('eleventh run, right after in each process: + freezing, guards skipped',
     'speed_compiled_dict_tags_mnv2_epyc_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('twelfth run, the same machine, all four columns (five processes): + freezing, '
     '**dict-tag guards**', 'speed_compiled_dict_tags_epyc_cpu.json', 'compiled+frozen', 1),
    ('twelfth run, right after in each process: + freezing, guards skipped',
     'speed_compiled_dict_tags_epyc_cpu.json', 'compiled+frozen skip-guard-eval', 1),
    ('the backbones alone, `torch.compile(backbone)`', 'speed_compiled_backbone_b1_cpu.json',
     'compiled backbone', 1),
    ("the backbones alone, **their own `.compile()`** (SAN's graph reads the kernel caches "
     'its eager wrapper refreshed)', 'speed_compiled_backbone_method_b1_cpu.json',
     'compiled backbone .compile()', 1),
]
# the same at batch 32, where the per-call costs (guards; B + s·A without freezing) amortise
COMPILED_B32_CPU = [
    ('`torch.compile`', 'speed_compiled_b32_cpu.json', 'compiled', 32),
    ('+ inductor freezing', 'speed_compiled_b32_cpu.json', 'compiled+frozen', 32),
    ('rerun: `torch.compile`', 'speed_compiled_b32_processes_cpu.json', 'compiled', 32),
    ('rerun: + inductor freezing', 'speed_compiled_b32_processes_cpu.json', 'compiled+frozen',
     32),
    ('third run, MobileNetV2 96 alone: + freezing', 'speed_compiled_b32_guards_cpu.json',
     'compiled+frozen', 32),
    ('third run: + freezing, guards skipped', 'speed_compiled_b32_guards_cpu.json',
     'compiled+frozen skip-guard-eval', 32),
]
# instruction counts (benchmarks/speed.py --only instructions): not timed
INSTRUCTION_COLUMNS = [(arch, 96) for arch in ARCHS]
INSTRUCTIONS_CPU = [
    ('eager, cached kernels', 'speed_instructions_b1_cpu.json', 'instructions per forward', 1),
    ('eager, cached kernels, first run (three forwards per count)',
     'speed_instructions_b1_96_cpu.json', 'instructions per forward', 1),
    ('eager, regenerating every kernel vs cached', 'speed_instructions_b1_cpu.json',
     'regenerate-every-forward vs cached', 1),
    ('`torch.compile`, inductor freezing, dict-tag guards (a call: guards and graph)',
     'speed_instructions_compiled_b1_cpu.json', 'instructions per forward, compiled+frozen', 1),
]
# dynamo rows (benchmarks/speed.py --only dynamo): (file, the kinds to show: None for every
# kind, or words one of which a kind must contain), each file's kinds in its order
DYNAMO_CPU = [('speed_dynamo_cpu.json', None), ('speed_dynamo_guard_groups_cpu.json', None),
              ('speed_dynamo_dict_tags_cpu.json', None),
              ('speed_dynamo_set_path_cpu.json', ('frozen', )),
              ('speed_dynamo_set_path_dict_tags_cpu.json', ('frozen', )),
              ('speed_dynamo_backbone_root_cpu.json', None)]
TRAIN_RUNS = [('eager', 'speed_train_b64_cuda.json'),
              ('eager', 'speed_train_b64_h200_cuda.json'),
              ('CUDA graphs', 'speed_train_b64_cuda_graph_h200_cuda.json'),
              ('CUDA graphs', 'speed_train_b64_cuda_graph_amp_h200_cuda.json')]
PRECISIONS = ('fp32', 'fp16', 'bf16')
FMNIST_RUNS = ['speed_fmnist_iteration_cuda.json',
               'speed_fmnist_iteration_h200_cuda.json',
               'speed_fmnist_iteration_profiled_h200_cuda.json',
               'speed_fmnist_iteration_rerun_h200_cuda.json',
               'speed_fmnist_iteration_amp_h200_cuda.json']
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
DYNAMO_ROW = re.compile(r'^dynamo per call, (?P<kind>.+) (?P<arch>' + '|'.join(ARCHS)
                        + r') r=(?P<size>\d+)$')
TRAIN_ROW = re.compile(r'^train step (?P<arch>\w+) K=\d+ b=(?P<batch>\d+) '
                       r'(?:(?P<precision>fp32|fp16|bf16) )?(?:cuda graph )?'
                       r'(?P<mode>.+)$')
BATCHED_ROW = re.compile(r'^batched vs per-size kernels, joint backward '
                         r'(?P<arch>\w+) b=\d+ (?P<precision>fp32|fp16|bf16)')


def load(name):
    with open(osp.join(RESULTS, name)) as f:
        return json.load(f)


# what speed.py writes first where /proc/cpuinfo names no model
# (processor_name's fallbacks, platform.processor() or platform.machine()):
# the architecture, which does not tell one CPU machine from another
ARCHITECTURE_NAMES = ('x86_64', 'aarch64', 'arm64', 'arm', 'amd64', 'i386',
                      'i686', 'ppc64le', 's390x', '')


def card(machine):
    """'x86_64, 16 CPU cores, torch 2.11.0+cu130, NVIDIA H200' -> 'H200';
    a machine without a GPU: 'CPU', or 'CPU (AMD EPYC)' where the file
    names the processor's model (rows from two CPU machines are not
    comparable)."""
    found = re.search(r'NVIDIA (\w+)', machine or '')
    if found:
        return found.group(1)
    model = (machine or '').split(',')[0].strip()
    return 'CPU' if model.lower() in ARCHITECTURE_NAMES else f'CPU ({model})'


def source(machine, name, processes=None):
    """A row's 'machine, file' cell: 'H200, `speed_x.json`' (and how many
    processes, for a ``--processes N`` file)."""
    return f'{card(machine)}, `{name}`' + (
        f', {processes} processes' if processes else '')


def entries(data):
    """The rows of a results file, each ``dict(name, ratio, ratios, san,
    plain)``: one process's rows (``ratios`` None; ``san`` / ``plain`` its
    median seconds), or for ``--processes N`` the summary (the median ratio,
    every process's ratio, and the median over processes of each side's
    median time)."""
    if 'summary' not in data:
        return [dict(name=row['name'], ratio=row['ratio'], ratios=None,
                     san=row['san']['median'], plain=row['plain']['median'])
                for row in data['rows']]
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
    """'1.007', with the range over processes '[1.00–1.02]' when there were
    several, and the median times (``times``: 'san' or 'both') or, for
    instruction counts (``times='counts'``), both sides' in millions."""
    cell = f'{entry["ratio"]:.3f}'
    if entry['ratios'] and len(entry['ratios']) > 1:
        cell += f' [{min(entry["ratios"]):.3f}–{max(entry["ratios"]):.3f}]'
    if times == 'san':
        cell += f' ({ms(entry["san"])})'
    elif times == 'both':
        cell += f' ({ms(entry["san"])} / {ms(entry["plain"])} ms)'
    elif times == 'counts':
        cell += f' ({entry["san"] / 1e6:.1f}M / {entry["plain"] / 1e6:.1f}M)'
    return cell


def grid_header(title, columns):
    """A grid table's two header lines: ``title``, the 'machine, file'
    column and one column per (architecture, size)."""
    return [f'| {title} | machine, file | '
            + ' | '.join(f'{ARCHS[a]} r={s}' for a, s in columns) + ' |',
            '|---|---|' + '---|' * len(columns)]


def grid_table(title, columns, specs, times=None, against_control=False):
    """A row per spec (what, file, kind, batch) and, under it, its A/A
    control's; a column per (architecture, size). ``against_control``: also
    SAN / control, the median over processes of each process's SAN / plain
    divided by its control / plain."""
    lines = grid_header(title, columns)
    for what, name, kind, batch in specs:
        data = load(name)
        found = sized_rows(data, kind, batch)
        cells = [ratio_cell(found[c][0], times) if c in found else ''
                 for c in columns]
        where = source(data.get('machine'), name,
                       len(data['processes']) if 'processes' in data else None)
        lines.append(f'| {what} | {where} | ' + ' | '.join(cells) + ' |')
        controls = [ratio_cell(found[c][1]) if c in found and found[c][1] else ''
                    for c in columns]
        if any(controls):
            lines.append('| A/A control (plain copy / plain) | | '
                         + ' | '.join(controls) + ' |')
        if against_control and any(controls):
            cells = []
            for c in columns:
                san, control = found.get(c, (None, None))
                if control is None or not san['ratios']:
                    cells.append('')
                    continue
                per_process = [s / k for s, k in zip(san['ratios'], control['ratios'])]
                cells.append(f'{statistics.median(per_process):.3f}')
            lines.append('| SAN / A/A control | | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def batch1_table():
    return grid_table("batch 1, SAN / plain (SAN's median ms)", ALL_COLUMNS, BATCH1_GPU,
                      times='san')


def inference_cpu_table():
    return grid_table('inference (eval, cached kernels), SAN / plain [range over processes]',
                      CPU_COLUMNS, INFERENCE_CPU, against_control=True)


def compiled_cpu_table():
    return grid_table('batch 1, compiled SAN / compiled plain [range over processes] '
                      '(median ms)', COMPILED_COLUMNS, COMPILED_CPU, times='both',
                      against_control=True)


def compiled_b32_cpu_table():
    return grid_table('batch 32, compiled SAN / compiled plain [range over processes] '
                      '(median ms)', COMPILED_COLUMNS, COMPILED_B32_CPU, times='both',
                      against_control=True)


def instructions_cpu_table():
    return grid_table('batch 1, instructions per forward, SAN / plain (millions)',
                      INSTRUCTION_COLUMNS, INSTRUCTIONS_CPU, times='counts')


def dynamo_cpu_table():
    """A row per kind of dynamo row (warm / cold, frozen, SAN without one
    of its guard groups), in each file's order; cells SAN / plain with
    both medians in microseconds."""
    lines = grid_header('what `torch.compile` adds per call (graph returning precomputed '
                        'outputs), SAN / plain (SAN / plain µs)', COMPILED_COLUMNS)
    for name, only in DYNAMO_CPU:
        data = load(name)
        kinds = {}
        for entry in entries(data):
            match = DYNAMO_ROW.match(entry['name'].strip())
            if match and (only is None or any(w in match['kind'] for w in only)):
                column = (match['arch'], int(match['size']))
                kinds.setdefault(match['kind'], {})[column] = entry
        for kind, found in kinds.items():
            cells = [f'{found[c]["ratio"]:.3f} ({found[c]["san"] * 1e6:.0f} / '
                     f'{found[c]["plain"] * 1e6:.0f})' if c in found else ''
                     for c in COMPILED_COLUMNS]
            lines.append(f'| {kind} | {source(data.get("machine"), name)} | '
                         + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def train_cpu_table():
    data = load('speed_train_cpu.json')
    lines = ['| five sizes, batch 8: SAN step / five plain steps | machine, file | time | '
             'peak memory vs the largest plain step |', '|---|---|---|---|']
    for entry, row in zip(entries(data), data['rows']):
        match = TRAIN_ROW.match(entry['name'].strip())
        memory = row.get('memory')
        cell = (f'{memory["ratio"]:.3f}× ({memory["san"] / 2**20:.0f} vs '
                f'{memory["plain"] / 2**20:.0f} MiB)') if memory else ''
        lines.append(f'| {ARCHS.get(match["arch"], match["arch"])}, {match["mode"]} | '
                     f'{source(data.get("machine"), "speed_train_cpu.json")} | '
                     f'{entry["ratio"]:.3f}× | {cell} |')
    return '\n'.join(lines)


def train_table():
    lines = ['| ResNet-50, batch 64, K = 5: SAN step / five plain steps | machine, file | '
             + ' | '.join(PRECISIONS) + ' |', '|---|---|' + '---|' * len(PRECISIONS)]
    for how, name in TRAIN_RUNS:
        data = load(name)
        where = source(data['machine'], name)
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
            cells = [ratio_cell(by_precision[p], 'both') if p in by_precision else ''
                     for p in PRECISIONS]
            lines.append(f'| {how}: {mode} | {where} | ' + ' | '.join(cells) + ' |')
        if batched:
            cells = [ratio_cell(batched[p]) if p in batched else '' for p in PRECISIONS]
            lines.append(f'| {how}: batched / per-size kernel generation, joint '
                         f'(SAN vs SAN) | {where} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def fmnist_table():
    lines = ['| Fashion-MNIST SAN ResNet-18, batch 128 | machine, file | iteration | data wait '
             '| vs eager | first 10 iterations, per iteration |', '|---|---|---|---|---|---|']
    for name in FMNIST_RUNS:
        data = load(name)
        for run in data.get('runs', [data]):
            where = source(run['machine'], name)
            # tools/train.py --amp: mmengine's AmpOptimWrapper, fp16 autocast
            amp = ', `--amp` (fp16)' if '--amp' in run['command'].split() else ''
            for result in run['results']:
                if result.get('iteration_seconds') is None:
                    continue
                lines.append(
                    f'| {FMNIST_VARIANTS.get(result["variant"], result["variant"])}{amp} | '
                    f'{where} | {result["iteration_seconds"] * 1e3:.1f} ms | '
                    f'{result["data_seconds"] * 1e3:.1f} ms | '
                    f'{result["speedup_over_eager"]:.2f}× | '
                    f'{result["first_window_seconds"]:.2f} s |')
    return '\n'.join(lines)


TABLES = {'speed-cpu-inference': inference_cpu_table, 'speed-cpu-train': train_cpu_table,
          'speed-cpu-compiled': compiled_cpu_table,
          'speed-cpu-compiled-b32': compiled_b32_cpu_table, 'speed-cpu-dynamo': dynamo_cpu_table,
          'speed-cpu-instructions': instructions_cpu_table,
          'speed-gpu-batch1': batch1_table,
          'speed-gpu-train': train_table, 'speed-gpu-fmnist': fmnist_table}


def render(document):
    """``document`` with every section this script owns regenerated."""
    names = section_names(document, COMMAND)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise KeyError(f'README sections {unknown} name no table of {COMMAND} '
                       f'(it makes {sorted(TABLES)})')
    for name in names:
        document = replace_section(document, name, COMMAND, TABLES[name]())
    return document


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a generated section is out of date')
    parser.add_argument('--readme', default=README)
    args = parser.parse_args()
    with open(args.readme) as f:
        document = f.read()
    updated = render(document)
    if args.check:
        if updated != document:
            print(f'{args.readme}: generated speed tables out of date; run {COMMAND}')
            sys.exit(1)
        print(f'{args.readme}: generated speed tables up to date')
        return
    with open(args.readme, 'w') as f:
        f.write(updated)
    print(f'{args.readme}: {len(section_names(updated, COMMAND))} speed tables written')


if __name__ == '__main__':
    main()
