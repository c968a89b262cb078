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


def test_profile_table_is_cut_from_the_log(train_iteration):
    border = '-' * 20
    lines = ['epoch 1 ...', border, 'Name  Self CPU %  Self CPU', border,
             'aten::convolution_backward  36.37%  273.109ms',
             'aten::mkldnn_convolution  15.55%  116.758ms', border,
             'Self CPU time total: 751.012ms', 'after the table']
    table = train_iteration.profile_table(lines)
    assert table[0] == border and table[1].startswith('Name')
    assert 'aten::mkldnn_convolution  15.55%  116.758ms' in table
    assert train_iteration.profile_table(['no profiler here']) is None


def test_cuda_graph_lines_come_first_among_the_notes(train_iteration):
    lines = ['[__recompiles] Recompiling function forward'] * 50 + [
        'nothing to see', 'skipping cudagraphs due to mutated inputs (2 instances)']
    notes = train_iteration.noteworthy(lines, limit=5)
    assert notes[0] == 'skipping cudagraphs due to mutated inputs (2 instances)'
    assert len(notes) == 5 and 'nothing to see' not in notes


def test_trace_summary_reads_host_and_gpu_time_per_iteration(train_iteration,
                                                             tmp_path):
    """A Chrome trace of two profiled iterations, as torch.profiler writes
    it: outer host events only, GPU work averaged, the median iteration."""
    import gzip

    def event(name, cat, ts, dur, tid=1):
        return dict(ph='X', name=name, cat=cat, ts=ts, dur=dur, tid=tid)

    events = [
        event('ProfilerStep#1', 'user_annotation', 0, 10_000),
        event('aten::addmm', 'cpu_op', 1_000, 3_000),
        event('cudaLaunchKernel', 'cuda_runtime', 1_500, 100),  # inside
        event('Optimizer.step#SGD.step', 'cpu_op', 5_000, 2_000),
        event('autograd::engine::evaluate_function', 'cpu_op', 4_000, 500,
              tid=2),
        event('ProfilerStep#2', 'user_annotation', 10_000, 30_000),
        event('aten::addmm', 'cpu_op', 11_000, 9_000),
        event('ProfilerStep#1', 'gpu_user_annotation', 0, 10_000, tid=7),
        event('gemm', 'kernel', 1_600, 4_000, tid=7),
        event('gemm', 'kernel', 11_600, 2_000, tid=7),
        dict(ph='i', name='instant', ts=0, tid=1),
    ]
    path = tmp_path / 'trace.json.gz'
    with gzip.open(path, 'wt') as f:
        json.dump(dict(traceEvents=events), f)
    summary = train_iteration.trace_summary(str(path))
    assert summary['iterations'] == 2
    # median of (10, 30) ms with an even count: the upper one
    assert summary['host_ms'] == pytest.approx(30.0)
    assert summary['gpu_ms'] == pytest.approx(3.0)
    assert summary['cuda_runtime_calls'] == pytest.approx(0.5)
    (main, ) = summary['threads']
    assert main['main'] and main['busy_ms'] == pytest.approx(9.0)
    assert main['top'] == [['aten::addmm', 9.0, 1]]
