"""The README's speed tables are generated from the results files: each cell
is the number of its own row (that the README holds them:
test_generated_sections.py)."""
import json

import pytest


@pytest.fixture()
def tables(load_benchmark):
    return load_benchmark('speed_tables')


def stats(ms):
    return dict(min=ms / 1e3, median=ms / 1e3, max=ms / 1e3)


def row(name, ratio, san_ms=1.0, plain_ms=1.0):
    return dict(name=name, ratio=ratio, san=stats(san_ms), plain=stats(plain_ms))


def write(folder, name, rows, machine='x86_64, torch 2.11.0, NVIDIA H200'):
    (folder / name).write_text(json.dumps(dict(machine=machine, rows=rows)))


def test_batch1_cells_pair_each_row_with_the_control_after_it(
        tables, tmp_path, monkeypatch):
    write(tmp_path, 'graph.json', [
        row('cuda graph resnet18 r=224 b=1', 0.999, san_ms=0.468),
        row('  control: plain copy vs plain, cuda graph resnet18 r=224 b=1',
            1.07),
        row('cuda graph resnet18 r=224 b=8', 2.0),  # another batch: not shown
        row('cuda graph mobilenetv2 r=96 b=1', 1.004, san_ms=0.373),
        row('inference resnet50 r=96 b=1', 1.5, san_ms=6.7),
        row('  control: plain copy vs plain resnet50 r=96 b=1', 0.9),
    ], machine='x86_64, torch 2.11.0+cu130, NVIDIA H100 80GB HBM3')
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'BATCH1_GPU', [
        ('graph', 'graph.json', 'cuda graph', 1),
        ('eager', 'graph.json', 'inference', 1)])
    lines = tables.batch1_table().splitlines()
    assert lines[2] == ('| graph | H100, `graph.json` | 0.999 (0.468) |  |  |  |  '
                        '| 1.004 (0.373) |')
    assert lines[3] == '| A/A control (plain copy / plain) | | 1.070 |  |  |  |  |  |'
    assert lines[4] == '| eager | H100, `graph.json` |  |  |  | 1.500 (6.70) |  |  |'
    assert lines[5] == '| A/A control (plain copy / plain) | |  |  |  | 0.900 |  |  |'
    assert len(lines) == 6


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
        machine='x86_64, 2 CPU cores, torch 2.14.1', summary=summary,
        processes=processes)))
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    lines = tables.grid_table('t', [('resnet18', 96)],
                              [('b1', 'b1.json', 'inference', 1)],
                              times='both', against_control=True).splitlines()
    assert lines[2] == ('| b1 | CPU, `b1.json`, 3 processes | '
                        '1.020 [1.000–1.080] (11.0 / 10.8 ms) |')
    assert lines[3] == '| A/A control (plain copy / plain) | | 1.010 [0.980–1.040] |'
    # per process 1.02 / 1.01, 1.08 / 1.04, 1.00 / 0.98: median 1.0199...
    assert lines[4] == '| SAN / A/A control | | 1.020 |'


def test_instruction_cells_show_both_counts_in_millions(
        tables, tmp_path, monkeypatch):
    counts = dict(min=125.4e6, median=125.4e6, max=125.4e6)
    write(tmp_path, 'instructions.json', [
        dict(name='instructions per forward resnet18 r=96 b=1', ratio=0.9934,
             san=counts, plain=dict(counts, median=126.23e6)),
        dict(name='  control: plain copy vs plain resnet18 r=96 b=1',
             ratio=1.0, san=counts, plain=counts)],
        machine="AMD EPYC, torch 2.14.1, instructions: valgrind's callgrind")
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'INSTRUCTIONS_CPU', [
        ('eager', 'instructions.json', 'instructions per forward', 1)])
    lines = tables.instructions_cpu_table().splitlines()
    assert lines[2] == ('| eager | CPU (AMD EPYC), `instructions.json` | '
                        '0.993 (125.4M / 126.2M) |  |  |')
    assert lines[3] == '| A/A control (plain copy / plain) | | 1.000 |  |  |'


@pytest.mark.parametrize('machine, expected', [
    ('x86_64, torch 2.11.0+cu130, NVIDIA H100 80GB HBM3', 'H100'),
    ('x86_64, 2 CPU cores, torch 2.14.1, 2 threads', 'CPU'),
    ('aarch64, 4 CPU cores, torch 2.14.1', 'CPU'),
    ('AMD EPYC, 2 CPU cores, torch 2.14.1, 2 threads', 'CPU (AMD EPYC)'),
    (None, 'CPU'),
])
def test_a_rows_machine_names_the_card_or_the_cpu_model(
        tables, machine, expected):
    """Rows from two CPU machines must not read as one: a file that names
    the processor's model (speed.py writes it first) shows it."""
    assert tables.card(machine) == expected


def test_train_cells_by_mode_and_precision(tables, tmp_path, monkeypatch):
    write(tmp_path, 'train.json', [
        row('train step resnet50 K=5 b=64 fp32 cuda graph joint backward', 1.024,
            97.1, 94.8),
        row('train step resnet50 K=5 b=64 fp16 cuda graph joint backward', 1.126,
            168.04, 149.2),
        row('train step resnet50 K=5 b=64 bf16 cuda graph joint backward', 0.98,
            50.0, 51.0),
        row('  batched vs per-size kernels, joint backward resnet50 b=64 fp32 '
            'cuda graph', 0.992),
    ])
    monkeypatch.setattr(tables, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(tables, 'TRAIN_RUNS', [('graphs', 'train.json')])
    lines = tables.train_table().splitlines()
    assert lines[2] == ('| graphs: joint backward | H200, `train.json` | '
                        '1.024 (97.1 / 94.8 ms) | 1.126 (168 / 149 ms) | '
                        '0.980 (50.0 / 51.0 ms) |')
    assert lines[3].startswith('| graphs: batched / per-size kernel generation')
    assert lines[3].endswith('| 0.992 |  |  |')


def test_a_section_naming_no_table_is_refused(tables):
    document = (f'<!-- speed-gpu-nothing: generated by {tables.COMMAND} -->\n'
                '<!-- /speed-gpu-nothing -->\n')
    with pytest.raises(KeyError, match='speed-gpu-nothing'):
        tables.render(document)
