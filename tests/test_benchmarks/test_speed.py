"""benchmarks/speed.py's measuring protocol: what the ratios in the README
rest on (the models themselves are covered by the model tests)."""
import argparse
import importlib.util
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def speed():
    spec = importlib.util.spec_from_file_location(
        'speed', osp.join(REPO, 'benchmarks', 'speed.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rounds_rotate_which_model_goes_first(speed, monkeypatch):
    order = []
    monkeypatch.setattr(speed, 'measure',
                        lambda fn, min_run_time: fn() or len(order))
    fns = [lambda name=name: order.append(name) for name in 'abc']
    args = argparse.Namespace(repeats=3, min_run_time=0.0)
    times = speed.interleaved_times(fns, args, warmup=0)
    assert order == list('abc' 'bca' 'cab')
    # each model's own list, in round order: the position it was timed at
    assert times == [[1, 6, 8], [2, 4, 9], [3, 5, 7]]


def test_control_is_timed_in_the_same_rounds(speed, monkeypatch, capsys):
    seconds = dict(san=1.05, plain=1.0, copy=0.99)
    monkeypatch.setattr(speed, 'measure', lambda fn, min_run_time: fn())
    args = argparse.Namespace(repeats=4, min_run_time=0.0)
    rows = speed.compare_with_control(
        'compiled x', lambda: seconds['san'], lambda: seconds['plain'],
        lambda: seconds['copy'], '  control x', args)
    assert [row['name'] for row in rows] == ['compiled x', '  control x']
    assert rows[0]['ratio'] == pytest.approx(1.05)
    assert rows[1]['ratio'] == pytest.approx(0.99)
    assert rows[1]['plain'] == rows[0]['plain']  # the same plain rounds
    assert 'ratio 1.050' in capsys.readouterr().out


def test_summary_over_processes_is_the_median_ratio_per_row(speed):
    processes = [
        [dict(name='a', ratio=1.03), dict(name='b', ratio=1.0)],
        [dict(name='a', ratio=1.01), dict(name='b', ratio=1.2)],
        [dict(name='a', ratio=1.08), dict(name='b', ratio=0.9)],
    ]
    summary = speed.summarise_processes(processes)
    assert [row['name'] for row in summary] == ['a', 'b']
    assert summary[0]['ratios'] == [1.03, 1.01, 1.08]
    assert summary[0]['median_ratio'] == pytest.approx(1.03)
    assert summary[1]['median_ratio'] == pytest.approx(1.0)


def test_without_a_control_only_the_san_row(speed, monkeypatch, capsys):
    monkeypatch.setattr(speed, 'measure', lambda fn, min_run_time: fn())
    args = argparse.Namespace(repeats=2, min_run_time=0.0)
    rows = speed.compare_with_control('inference x', lambda: 1.1, lambda: 1.0,
                                      None, '  control x', args)
    assert [row['name'] for row in rows] == ['inference x']
    assert rows[0]['ratio'] == pytest.approx(1.1)
