"""The size table on hand-made data: choosing under a budget, ties, errors, storage."""
import copy
import math

import numpy as np
import pytest
import torch

from san_mm.apis.size_table import (NoSizeFitsError, SizeTableError,
                                    best_mode, build_size_table, choose_size,
                                    read_size_table, select_calibrated_state,
                                    size_table_curves, size_table_markdown,
                                    validate_size_table, write_size_table)

ALL = ('proxy', 'ideal', 'calibrated', 'data_free')


def row(size, macs, top1, trained=False):
    top1 = dict(top1)
    return dict(size=size, trained=trained, top1=top1,
                best_mode=best_mode(top1), macs=macs, params=1000)


@pytest.fixture
def table():
    """Six sizes; 28/24 tie at 79 and 20/16 tie at 75 (the cheaper must
    win); 32 is best only with calibrated BN."""
    rows = [
        row(32, 10_000_000, dict(proxy=80.0, data_free=81.0, calibrated=82.0)),
        row(28, 8_000_000, dict.fromkeys(ALL, 79.0), trained=True),
        row(24, 6_000_000, dict(proxy=79.0, ideal=78.0, data_free=79.0)),
        row(20, 4_000_000, dict.fromkeys(ALL, 75.0), trained=True),
        row(16, 3_000_000, dict(proxy=75.0, data_free=75.0)),
        row(12, 2_000_000, dict.fromkeys(ALL, 70.0), trained=True),
    ]
    return dict(version=1, metric='accuracy/top1', dataset='Hand',
                split='val', num_images=100, calibration_images=8,
                train_sizes=[28, 20, 12], in_channels=3,
                source_checkpoint='hand.pth', calibrated_sizes=[32],
                sizes=rows,
                latency=dict(machine=dict(device='cpu', threads=1), batch=1,
                             method='hand', ms={'32': 5.0, '28': 4.0,
                                                '24': 3.0, '20': 2.0,
                                                '16': 1.5, '12': 1.0}))


def reader_pick(table, max_macs=math.inf, max_ms=math.inf):
    """What a person reading the table does: among the sizes within the
    budget, the highest accuracy; on equal accuracy, the cheaper."""
    ms = table['latency']['ms']
    fits = [r for r in table['sizes']
            if r['macs'] <= max_macs and ms[str(r['size'])] <= max_ms]
    best = max(fits, key=lambda r: (r['top1'][r['best_mode']], -r['macs']))
    return best['size']


def test_best_mode_prefers_accuracy_then_the_mode_needing_least():
    assert best_mode(dict(proxy=1.0, calibrated=2.0)) == 'calibrated'
    assert best_mode(dict.fromkeys(ALL, 5.0)) == 'proxy'
    assert best_mode(dict(calibrated=3.0, data_free=3.0)) == 'data_free'
    assert best_mode(dict(calibrated=3.0, ideal=3.0, data_free=1.0)) == 'ideal'


def test_chosen_size_is_the_most_accurate_within_the_budget(table):
    budgets = sorted({r['macs'] for r in table['sizes']})
    budgets += [b + 1 for b in budgets] + [b - 1 for b in budgets[1:]]
    for max_macs in budgets:
        choice = choose_size(table, max_macs=max_macs)
        assert choice['size'] == reader_pick(table, max_macs=max_macs)
        assert choice['macs'] <= max_macs
    for max_ms in (1.0, 1.6, 2.5, 3.0, 4.5, 10.0):
        assert choose_size(table, max_latency_ms=max_ms)['size'] == \
            reader_pick(table, max_ms=max_ms)
    # the cases spelled out
    assert choose_size(table)['size'] == 32  # no budget: the most accurate
    assert choose_size(table, max_macs=9e6)['size'] == 24  # 79 tie: cheaper
    assert choose_size(table, max_macs=5e6)['size'] == 16  # 75 tie: cheaper
    assert choose_size(table, max_macs=6e6, max_latency_ms=2.0)['size'] == 16


def test_choice_reports_size_mode_macs_and_accuracy(table):
    choice = choose_size(table, max_macs=1e7)
    assert choice == dict(size=32, inference_mode='calibrated',
                          macs=10_000_000, params=1000, top1=82.0,
                          metric='accuracy/top1', latency_ms=5.0,
                          trained=False)
    assert choose_size(table, size=24)['inference_mode'] == 'proxy'


def test_no_size_fits_names_the_cheapest(table):
    with pytest.raises(NoSizeFitsError) as error:
        choose_size(table, max_macs=1.5e6)
    assert str(error.value) == (
        'no size fits max_macs=1.5e+06 (1.50 MMACs): the cheapest, 12 px, '
        'needs 2.00 MMACs; raise max_macs to at least 2000000')
    with pytest.raises(NoSizeFitsError, match=r'no size fits max_latency_ms='
                       r'0.5: the fastest, 12 px, takes 1.000 ms \(batch 1'):
        choose_size(table, max_latency_ms=0.5)
    with pytest.raises(NoSizeFitsError, match='among the sizes within '
                       'max_macs=7e'):
        choose_size(table, max_macs=7e6, max_latency_ms=0.9)


@pytest.mark.parametrize('kwargs, message', [
    (dict(max_macs=-1), 'max_macs must be a positive number, got -1'),
    (dict(max_macs='2M'), "max_macs must be a positive number, got '2M'"),
    (dict(max_latency_ms=0), 'max_latency_ms must be a positive number'),
    (dict(size=30), r'size 30 is not in the size table \(sizes \[32, 28, 24,'
     r' 20, 16, 12\]\); pick one of them, or add it with: python tools/'
     r'sweep_sizes.py CONFIG CKPT --sizes 30'),
    (dict(size=24, max_macs=1e6), 'give either size'),
])
def test_bad_requests_say_what_was_expected(table, kwargs, message):
    with pytest.raises(SizeTableError, match=message):
        choose_size(table, **kwargs)


def test_latency_budget_needs_measured_latencies(table):
    del table['latency']
    with pytest.raises(SizeTableError, match=r'needs measured latencies.*'
                       r'--save-table OUT.pth --latency'):
        choose_size(table, max_latency_ms=3)


@pytest.mark.parametrize('edit, message', [
    (lambda t: t.update(version=2), 'version 2 is not supported'),
    (lambda t: t['sizes'][0].update(best_mode='ideal'),
     r"row 0 \(size 32\) has best_mode 'ideal', expected one of its measured "
     r"modes \['proxy', 'data_free', 'calibrated'\]"),
    (lambda t: t['sizes'][1]['top1'].update(fast=1.0),
     "has the mode 'fast'"),
    (lambda t: t['sizes'][2].update(macs=np.int64(5)),
     r"table\['sizes'\]\[2\]\['macs'\] is a int64"),
    (lambda t: t['sizes'].append(copy.deepcopy(t['sizes'][0])),
     'size 32 appears twice'),
    (lambda t: t['latency']['ms'].update({'30': 1.0}),
     "latency ms has the key '30'"),
    (lambda t: t.update(sizes=[]), "'sizes' is empty"),
])
def test_invalid_tables_are_refused_with_the_bad_value(table, edit, message):
    edit(table)
    with pytest.raises(SizeTableError, match=message) as error:
        validate_size_table(table)
    assert 're-create it with: python tools/sweep_sizes.py' in str(
        error.value)


def test_build_from_a_sweep():
    results = {
        'proxy': {'accuracy/top1@24': 50.0, 'accuracy/top1@20': 40.0,
                  'accuracy/top1@mean': 45.0},
        'calibrated': {'accuracy/top1@24': 50.0,
                       'accuracy/top1@20': 45.0},
    }
    complexity = [dict(size=24, flops=600, deployed_params=7),
                  dict(size=20, flops=400, deployed_params=7)]
    table = build_size_table(results, complexity, train_sizes=[24],
                             dataset='D', num_images=3,
                             calibration_images=8)
    assert [r['size'] for r in table['sizes']] == [24, 20]
    assert table['sizes'][0] == dict(
        size=24, trained=True, top1=dict(proxy=50.0, calibrated=50.0),
        best_mode='proxy', macs=600, params=7)
    assert table['sizes'][1]['best_mode'] == 'calibrated'
    assert table['calibrated_sizes'] == [20]
    with pytest.raises(SizeTableError, match=r"metric 'accuracy/top5' is not "
                       r"in the sweep results \(they have \['accuracy/top1'"):
        build_size_table(results, complexity, [24], metric='accuracy/top5')


def test_table_round_trips_through_save_and_weights_only_load(table,
                                                               tmp_path):
    state = {'backbone.w': torch.arange(6.).reshape(2, 3),
             'backbone.bn.calibrated.32.running_mean': torch.ones(2)}
    out = str(tmp_path / 'sized.pth')
    write_size_table(out, state, table,
                     meta=dict(dataset_meta=dict(classes=['a', 'b'])))
    loaded = torch.load(out, map_location='cpu', weights_only=True)
    assert loaded['meta']['size_table'] == table
    assert loaded['meta']['dataset_meta'] == dict(classes=['a', 'b'])
    for key, value in state.items():
        torch.testing.assert_close(loaded['state_dict'][key], value)
    assert read_size_table(out) == table  # mmengine's loader, weights_only
    assert choose_size(read_size_table(out), max_macs=5e6)['size'] == 16


def test_checkpoint_without_table_says_which_command_adds_one(tmp_path):
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': {}, 'meta': {}}, path)
    with pytest.raises(SizeTableError) as error:
        read_size_table(path)
    assert str(error.value) == (
        f"{path} has no size table (meta['size_table']); add one with: "
        f'python tools/sweep_sizes.py CONFIG {path} --save-table OUT.pth')


def test_select_calibrated_state():
    state = {'a.calibrated.20.running_mean': 1, 'a.calibrated.2.x': 2,
             'b.calibrated.20.running_var': 3, 'a.sets.0.weight': 4}
    assert select_calibrated_state(state, [20]) == {
        'a.calibrated.20.running_mean': 1, 'b.calibrated.20.running_var': 3}
    assert select_calibrated_state(state, []) == {}


def test_markdown_and_curves(table):
    lines = size_table_markdown(table).splitlines()
    assert lines[0] == ('| size | trained | MMACs | params (M) | proxy | ideal '
                        '| data_free | calibrated | best mode | ms (batch 1) |')
    assert lines[2] == ('| 32 |  | 10.00 | 0.001 | 80.00 |  | 81.00 | 82.00 | '
                        'calibrated | 5.000 |')
    curves = size_table_curves(table, 'SAN', all_modes=True)
    best = curves['SAN, best mode']
    assert best[32] == 82.0 and best[12] == 70.0
    assert list(curves)[-1] == 'SAN, best mode'  # drawn last, on top
    assert size_table_curves(table, 'SAN') == {'SAN': best}
    assert curves['SAN, ideal'] == {28: 79.0, 24: 78.0, 20: 75.0, 12: 70.0}


def test_latencies_name_the_processor_model(tmp_path, monkeypatch, table):
    """Two x86_64 CPUs are different machines for a latency: the stored
    machine names the model (/proc/cpuinfo), and choosing under a latency
    budget on another model warns, naming both."""
    from san_mm.analysis import timing
    from san_mm.apis import size_table
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\n'
                       'model name\t: AMD EPYC 7B13\nflags\t\t: fpu\n')
    monkeypatch.setattr(timing, 'CPUINFO_PATH', str(cpuinfo))
    assert timing.processor_name() == 'AMD EPYC 7B13'
    assert timing.machine_info()['processor'] == 'AMD EPYC 7B13'

    logged = []
    monkeypatch.setattr(size_table, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    table['latency']['machine'] = timing.machine_info()
    choose_size(table, max_latency_ms=3)
    assert logged == []
    table['latency']['machine']['processor'] = 'Intel Xeon Platinum 8481C'
    assert choose_size(table, max_latency_ms=3)['size'] == 24
    assert len(logged) == 1 and "differs in ['processor']" in logged[0]
    assert 'Intel Xeon Platinum 8481C' in logged[0]
    assert 'AMD EPYC 7B13' in logged[0]

    # elsewhere: platform's processor, else the architecture
    monkeypatch.setattr(timing, 'CPUINFO_PATH', str(tmp_path / 'none'))
    monkeypatch.setattr(timing.platform, 'processor', lambda: '')
    monkeypatch.setattr(timing.platform, 'machine', lambda: 'arm64')
    assert timing.processor_name() == 'arm64'
