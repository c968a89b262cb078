"""benchmarks/train_iteration.py: how an iteration time is read from the
runner's own logs (the runs themselves are tools/train.py, tested there)."""
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_windows_are_the_training_records_of_the_latest_run(train_iteration,
                                                            tmp_path):
    for stamp, seconds in (('20260101_000000', 9.0),
                           ('20260102_000000', 0.02)):
        vis = tmp_path / stamp / 'vis_data'
        vis.mkdir(parents=True)
        records = [
            dict(lr=0.1, time=seconds * 50, data_time=0.5, iter=10, step=10),
            dict(lr=0.1, time=seconds, data_time=0.001, iter=20, step=20),
            # validation records carry no lr
            dict(**{'accuracy/top1': 50.0}, time=seconds, step=1),
            dict(lr=0.1, time=seconds * 2, data_time=0.002, iter=30,
                 step=30),
            dict(lr=0.1, time=seconds, data_time=0.001, iter=40, step=40),
        ]
        (vis / 'scalars.json').write_text(
            ''.join(json.dumps(r) + '\n' for r in records))
    windows = train_iteration.window_times(str(tmp_path))
    assert windows == [(10, 1.0, 0.5), (20, 0.02, 0.001), (30, 0.04, 0.002),
                       (40, 0.02, 0.001)]
    summary = train_iteration.summarise(windows, skip_windows=1)
    assert summary['iteration_seconds'] == pytest.approx(0.02)
    assert summary['iteration_seconds_max'] == pytest.approx(0.04)
    assert summary['data_seconds'] == pytest.approx(0.001)
    assert summary['first_window_seconds'] == pytest.approx(1.0)
    assert summary['windows_used'] == 3


def test_too_few_windows_give_no_time(train_iteration, tmp_path):
    assert train_iteration.window_times(str(tmp_path)) == []
    assert train_iteration.summarise([(10, 1.0, 0.1)], skip_windows=2) == \
        dict(iteration_seconds=None, windows=1)


def test_batch_size_follows_the_cfg_options(train_iteration):
    config = osp.join(REPO, 'configs', 'fashion_mnist',
                      'san_resnet18_fmnist.py')
    assert train_iteration.batch_size_of(config, None) == 128
    assert train_iteration.batch_size_of(
        config, ['train_dataloader.batch_size=32',
                 'train_dataloader.num_workers=2']) == 32


def test_cuda_graph_lines_come_first_among_the_notes(train_iteration):
    lines = ['[__recompiles] Recompiling function forward'] * 50 + [
        'nothing to see', 'skipping cudagraphs due to mutated inputs (2 instances)']
    notes = train_iteration.noteworthy(lines, limit=5)
    assert notes[0] == 'skipping cudagraphs due to mutated inputs (2 instances)'
    assert len(notes) == 5 and 'nothing to see' not in notes
