"""The speed tables of docs/performance.md are generated from the results
files: each cell is the number of its own row, and the document holds what
the committed files make (`speed_tables.py --check`)."""
import json

import pytest


@pytest.fixture()
def tables(load_benchmark):
    return load_benchmark('speed_tables')


def stats(ms):
    return dict(min=ms / 1e3, median=ms / 1e3, max=ms / 1e3)


def row(name, ratio, san_ms=1.0, plain_ms=1.0, **more):
    return dict(name=name, ratio=ratio, san=stats(san_ms), plain=stats(plain_ms),
                **more)


def write(folder, name, rows, machine='x86_64, torch 2.11.0, NVIDIA H200'):
    (folder / name).write_text(json.dumps(dict(machine=machine, rows=rows)))


def table_lines(text):
    """The table's lines, after the command block that precedes it."""
    return [line for line in text.splitlines() if line.startswith('|')]


def test_the_documents_tables_are_what_the_committed_files_make(tables):
    with open(tables.DOCUMENT) as f:
        document = f.read()
    names = tables.section_names(document, tables.COMMAND)
    assert sorted(names) == sorted(tables.TABLES), (
        'docs/performance.md and speed_tables.TABLES name different tables')
    assert tables.render(document) == document, (
        f'a table differs from its results file: run {tables.COMMAND}')


def test_rows_pair_with_the_control_after_them_and_name_machine_and_file(
        tables, tmp_path, monkeypatch):
    write(tmp_path, 'graph.json', [
        row('cuda graph resnet18 r=224 b=1', 0.999, san_ms=0.468),
        row('  control: plain copy vs plain, cuda graph resnet18 r=224 b=1',
            1.07),
        row('cuda graph resnet18 r=224 b=8', 2.0),  # another batch: not shown
        row('cuda graph mobilenetv2 r=96 b=1', 1.004, san_ms=0.373),
        row('inference resnet50 r=96 b=1', 1.5, san_ms=6.7),
        row('  control: plain copy vs plain resnet50 r=96 b=1', 0.9),
    ], machine=dict(processor='AMD EPYC', device='cuda: NVIDIA H100 80GB HBM3'))
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'BATCH1_GPU', [
        ('graph', 'graph.json', 'cuda graph', 1),
        ('eager', 'graph.json', 'inference', 1),
        ('later', 'absent.json', 'inference', 1)])
    text = tables.gpu_batch1_table()
    assert text.startswith('```bash\nbash benchmarks/cuda_rows.sh')
    lines = table_lines(text)
    assert lines[2] == ('| graph | H100, `graph.json` | 0.999 (0.468) |  |  |  |  '
                        '| 1.004 (0.373) |')
    assert lines[3] == '| A/A control (plain copy / plain) |  | 1.070 |  |  |  |  |  |'
    assert lines[4] == '| eager | H100, `graph.json` |  |  |  | 1.500 (6.70) |  |  |'
    assert lines[5] == '| A/A control (plain copy / plain) |  |  |  |  | 0.900 |  |  |'
    assert lines[6].startswith('| later | not measured yet: no `absent.json` |')
    assert len(lines) == 7


def test_several_processes_give_the_median_their_range_and_san_over_control(
        tables, tmp_path, monkeypatch):
    """--processes N files: the summary's median ratio, the range over the
    processes, the median over processes of each side's time, and SAN /
    control per process before the median."""
    name = 'inference resnet18 r=96 b=1'
    control = '  control: plain copy vs plain resnet18 r=96 b=1'
    processes = [[row(name, r, san_ms=s, plain_ms=p), row(control, c)]
                 for r, c, s, p in [(1.02, 1.01, 11.0, 10.8),
                                    (1.08, 1.04, 12.0, 11.1),
                                    (1.00, 0.98, 10.0, 10.0)]]
    summary = [dict(name=name, ratios=[1.02, 1.08, 1.00], median_ratio=1.02),
               dict(name=control, ratios=[1.01, 1.04, 0.98], median_ratio=1.01)]
    (tmp_path / 'b1.json').write_text(json.dumps(dict(
        machine=dict(processor='AMD EPYC', device='cpu'), summary=summary,
        processes=processes)))
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    lines = tables.grid_table('t', [('resnet18', 96)],
                              [('b1', 'b1.json', 'inference', 1)],
                              times='both').splitlines()
    assert lines[2] == ('| b1 | CPU (AMD EPYC), `b1.json`, 3 processes | '
                        '1.020 [1.000–1.080] (11.0 / 10.8 ms) |')
    assert lines[3] == '| A/A control (plain copy / plain) |  | 1.010 [0.980–1.040] |'
    # per process 1.02 / 1.01, 1.08 / 1.04, 1.00 / 0.98: median 1.0199...
    assert lines[4] == '| SAN / A/A control |  | 1.020 |'


@pytest.mark.parametrize('machine, expected', [
    (dict(processor='AMD EPYC', device='cpu'), 'CPU (AMD EPYC)'),
    (dict(processor='x86_64', device='cpu'), 'CPU'),
    (dict(processor='AMD EPYC', device='cuda: NVIDIA H200'), 'H200'),
    ('x86_64, torch 2.11.0+cu130, NVIDIA H100 80GB HBM3', 'H100'),
    ('x86_64, 2 CPU cores, torch 2.14.1, 2 threads', 'CPU'),
    ('AMD EPYC, 2 CPU cores, torch 2.14.1, 2 threads', 'CPU (AMD EPYC)'),
    (None, 'CPU'),
])
def test_a_rows_machine_names_the_card_or_the_cpu_model(
        tables, machine, expected):
    """Rows from two CPU machines must not read as one: a file that names
    the processor's model shows it (machine_info's dict, or an older
    file's string)."""
    assert tables.card(machine) == expected


def test_gpu_train_cells_by_mode_and_precision_across_runs(
        tables, tmp_path, monkeypatch):
    """A file of several runs (fp32, then AMP) fills one row per mode."""
    machine = 'x86_64, torch 2.11.0, NVIDIA H200'
    runs = [dict(machine=machine, rows=[
        row('train step resnet50 K=5 b=64 fp32 cuda graph joint backward', 1.024,
            97.1, 94.8)]),
        dict(machine=machine, rows=[
            row('train step resnet50 K=5 b=64 fp16 cuda graph joint backward', 1.126,
                168.04, 149.2),
            row('  batched vs per-size kernels, joint backward resnet50 b=64 fp16 '
                'cuda graph', 0.992)])]
    (tmp_path / 'train.json').write_text(json.dumps(dict(runs=runs)))
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'TRAIN_GPU', [('graphs', 'train.json')])
    lines = table_lines(tables.gpu_train_table())
    assert lines[2] == ('| graphs: joint backward | H200, `train.json` | '
                        '1.024 (97.1 / 94.8 ms) | 1.126 (168 / 149 ms) |  |')
    assert lines[3].startswith('| graphs: batched / per-size kernel generation')
    assert lines[3].endswith('|  | 0.992 |  |')


def test_cpu_train_rows_show_time_and_peak_memory(tables, tmp_path, monkeypatch):
    memory = dict(san=3 * 2**20, plain=2**20, ratio=3.0)
    write(tmp_path, 'train.json', [
        row('train step resnet18 K=5 b=8 fp32 joint backward', 1.031, 4400, 4300,
            memory=memory),
        row('  batched vs per-size kernels, joint backward resnet18 b=8 fp32', 1.159)],
        machine=dict(processor='AMD EPYC', device='cpu'))
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'TRAIN_CPU', 'train.json')
    lines = table_lines(tables.train_cpu_table())
    assert lines[2] == ('| ResNet-18, joint backward | CPU (AMD EPYC), `train.json` | '
                        '1.031 (4400 / 4300 ms) | 3.000× (3 vs 1 MiB) |')
    assert lines[3].startswith('| ResNet-18, batched / per-size kernel generation')


def test_a_section_naming_no_table_is_refused(tables):
    document = (f'<!-- speed-gpu-nothing: generated by {tables.COMMAND} -->\n'
                '<!-- /speed-gpu-nothing -->\n')
    with pytest.raises(KeyError, match='speed-gpu-nothing'):
        tables.render(document)
