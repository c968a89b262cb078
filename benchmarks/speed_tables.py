"""The README's GPU speed tables, generated from the results files.

    python benchmarks/speed_tables.py           # rewrite the README's generated sections
    python benchmarks/speed_tables.py --check   # exit 1 if one of them is out of date

Each table reads the ``docs/results/*_cuda.json`` files that ``benchmarks/cuda_rows.sh`` (through
``speed.py`` and ``train_iteration.py``) wrote on a GPU machine, names the card of every row from
the file's ``machine`` and the file itself, and shows what the file holds: ratios SAN / plain
(medians of the rounds) with SAN's and the plain model's median times. A new results file is
added to ``RUNS`` below; the README never gets a number by hand.
"""
import argparse
import json
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from generated_sections import replace_section, section_names  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(REPO, 'docs', 'results')
README = osp.join(REPO, 'README.md')
COMMAND = 'python benchmarks/speed_tables.py'

ARCHS = dict(resnet18='ResNet-18', resnet50='ResNet-50',
             mobilenetv2='MobileNetV2')
BATCH1_COLUMNS = [(arch, size) for arch in ARCHS for size in (224, 96)]
# (what, file, row kind in speed.py's names); the control rows of a kind
# follow it
BATCH1_RUNS = [
    ('CUDA graph of the eager forward', 'speed_inference_b1_cuda.json',
     'cuda graph'),
    ('CUDA graph, second run', 'speed_cudagraph_b1_cuda.json', 'cuda graph'),
    ('CUDA graph', 'speed_cudagraph_b1_h200_cuda.json', 'cuda graph'),
    ('`torch.compile`, reduce-overhead, frozen', 'speed_compiled_h200_cuda.json',
     'compiled+frozen reduce-overhead'),
    ('eager', 'speed_inference_b1_cuda.json', 'inference'),
    ('eager, regenerating every kernel vs cached', 'speed_inference_b1_cuda.json',
     'regenerate-every-forward vs cached'),
]
TRAIN_RUNS = [('eager', 'speed_train_b64_cuda.json'),
              ('eager', 'speed_train_b64_h200_cuda.json'),
              ('CUDA graphs', 'speed_train_b64_cuda_graph_h200_cuda.json')]
PRECISIONS = ('fp32', 'fp16', 'bf16')
FMNIST_RUNS = ['speed_fmnist_iteration_cuda.json',
               'speed_fmnist_iteration_h200_cuda.json',
               'speed_fmnist_iteration_profiled_h200_cuda.json',
               'speed_fmnist_iteration_rerun_h200_cuda.json']
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
                       r'(?P<precision>fp32|fp16|bf16)(?: cuda graph)? '
                       r'(?P<mode>.+)$')
BATCHED_ROW = re.compile(r'^batched vs per-size kernels, joint backward '
                         r'(?P<arch>\w+) b=\d+ (?P<precision>fp32|fp16|bf16)')


def load(name):
    with open(osp.join(RESULTS, name)) as f:
        return json.load(f)


def card(machine):
    """'x86_64, 16 CPU cores, torch 2.11.0+cu130, NVIDIA H200' -> 'H200'."""
    found = re.search(r'NVIDIA (\w+)', machine or '')
    return found.group(1) if found else (machine or '?')


def torch_version(machine):
    found = re.search(r'torch (\S+?),', machine or '')
    return found.group(1) if found else '?'


def sized_rows(rows, kind):
    """``{(arch, size): (row, its A/A control row or None)}`` of the batch-1
    rows of ``kind`` (``speed.py``'s row name up to the architecture; a
    control row follows the row it controls)."""
    found, last = {}, None
    for row in rows:
        name = row['name'].strip()
        if name.startswith('control:'):
            if last is not None:
                found[last] = (found[last][0], row)
            last = None
            continue
        match = SIZED_ROW.match(name)
        last = None
        if match and match['batch'] == '1' and match['kind'] == kind:
            last = (match['arch'], int(match['size']))
            found[last] = (row, None)
    return found


def ms(stats):
    value = stats['median'] * 1e3
    return f'{value:.3f}' if value < 1 else f'{value:.1f}'


def batch1_table():
    lines = ['| batch 1, SAN / plain (SAN\'s median ms) | card, file | '
             + ' | '.join(f'{ARCHS[a]} r={s}' for a, s in BATCH1_COLUMNS) + ' |',
             '|---|---|' + '---|' * len(BATCH1_COLUMNS)]
    for what, name, kind in BATCH1_RUNS:
        data = load(name)
        found = sized_rows(data['rows'], kind)
        where = f'{card(data["machine"])}, `{name}`'
        cells = [f'{found[c][0]["ratio"]:.3f} ({ms(found[c][0]["san"])})'
                 if c in found else '' for c in BATCH1_COLUMNS]
        lines.append(f'| {what} | {where} | ' + ' | '.join(cells) + ' |')
        controls = [f'{found[c][1]["ratio"]:.3f}'
                    if c in found and found[c][1] else '' for c in BATCH1_COLUMNS]
        if any(controls):
            lines.append('| A/A control (plain copy / plain) | | '
                         + ' | '.join(controls) + ' |')
    return '\n'.join(lines)


def train_table():
    lines = ['| ResNet-50, batch 64, K = 5: SAN step / five plain steps | card, file | '
             + ' | '.join(PRECISIONS) + ' |', '|---|---|' + '---|' * len(PRECISIONS)]
    for how, name in TRAIN_RUNS:
        data = load(name)
        where = f'{card(data["machine"])}, `{name}`'
        modes, batched = {}, {}
        for row in data['rows']:
            match = TRAIN_ROW.match(row['name'].strip())
            if match:
                modes.setdefault(match['mode'], {})[match['precision']] = row
                continue
            match = BATCHED_ROW.match(row['name'].strip())
            if match:
                batched[match['precision']] = row
        for mode, by_precision in modes.items():
            cells = [f'{r["ratio"]:.3f} ({ms(r["san"])} vs {ms(r["plain"])} ms)'
                     if (r := by_precision.get(p)) else '' for p in PRECISIONS]
            lines.append(f'| {how}: {mode} | {where} | ' + ' | '.join(cells) + ' |')
        if batched:
            cells = [f'{batched[p]["ratio"]:.3f}' if p in batched else ''
                     for p in PRECISIONS]
            lines.append(f'| {how}: batched / per-size kernel generation, joint '
                         f'(SAN vs SAN) | {where} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def fmnist_table():
    lines = ['| Fashion-MNIST SAN ResNet-18, batch 128 | card, file | iteration | data wait '
             '| vs eager | first 10 iterations, per iteration |', '|---|---|---|---|---|---|']
    for name in FMNIST_RUNS:
        data = load(name)
        for run in data.get('runs', [data]):
            where = f'{card(run["machine"])}, `{name}`'
            for result in run['results']:
                if result.get('iteration_seconds') is None:
                    continue
                lines.append(
                    f'| {FMNIST_VARIANTS.get(result["variant"], result["variant"])} | '
                    f'{where} | {result["iteration_seconds"] * 1e3:.1f} ms | '
                    f'{result["data_seconds"] * 1e3:.1f} ms | '
                    f'{result["speedup_over_eager"]:.2f}× | '
                    f'{result["first_window_seconds"]:.2f} s |')
    return '\n'.join(lines)


TABLES = {'speed-gpu-batch1': batch1_table, 'speed-gpu-train': train_table,
          'speed-gpu-fmnist': fmnist_table}


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
