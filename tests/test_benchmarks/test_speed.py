"""benchmarks/speed.py: the protocol the ratios in docs/performance.md rest on
(the models themselves are covered by the model tests)."""
import argparse
import json
import subprocess

import pytest


def fake_measure(fn, min_run_time):
    """A measurement that returns what ``fn`` returns: its 'seconds'."""
    return fn()


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
    monkeypatch.setattr(speed, 'measure', fake_measure)
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    args = argparse.Namespace(repeats=4, min_run_time=0.0)
    rows = speed.compare_with_control(
        'compiled x', lambda: seconds['san'], lambda: seconds['plain'],
        lambda: seconds['copy'], '  control x', args)
    assert [row['name'] for row in rows] == ['compiled x', '  control x']
    assert rows[0]['ratio'] == pytest.approx(1.05)
    assert rows[1]['ratio'] == pytest.approx(0.99)
    assert rows[1]['plain'] == rows[0]['plain']  # the same plain rounds
    assert 'ratio 1.050' in capsys.readouterr().out
    # without a control, the SAN row alone
    rows = speed.compare_with_control('x', lambda: 1.1, lambda: 1.0, None,
                                      '  control x', args)
    assert [row['name'] for row in rows] == ['x']


def test_each_row_is_written_when_measured(speed, monkeypatch, tmp_path):
    """A run stopped by a timeout keeps the rows it measured."""
    out = tmp_path / 'rows.json'
    monkeypatch.setitem(speed._RESULTS, 'path', str(out))
    monkeypatch.setitem(speed._RESULTS, 'machine', dict(processor='test'))
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    speed._row('first', [2.0, 2.2], [2.0, 2.0])
    written = json.loads(out.read_text())
    assert written['complete'] is False
    assert written['machine'] == dict(processor='test')
    assert [row['name'] for row in written['rows']] == ['first']
    assert written['rows'][0]['ratio'] == pytest.approx(1.05)
    assert written['rows'][0]['san'] == dict(min=2.0, median=2.1, max=2.2)
    speed._row('second', [1.0], [1.0])
    speed._save_results(complete=True)
    written = json.loads(out.read_text())
    assert written['complete'] is True
    assert [row['name'] for row in written['rows']] == ['first', 'second']


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


def test_processes_are_fresh_and_kept_when_a_later_one_fails(
        speed, monkeypatch, tmp_path):
    """--processes N --out F: each process is this script again with one
    process and its own --out; F is rewritten after every process, so those
    that finished are kept when a later one fails ("complete" false)."""
    calls = []

    def fake_run(command, check):
        calls.append(command)
        assert command[-4:-1] == ['--processes', '1', '--out']
        if len(calls) == 3:
            raise subprocess.CalledProcessError(1, command)
        with open(command[-1], 'w') as f:
            json.dump(dict(machine='m', rows=[
                dict(name='row', ratio=1.0 + len(calls) / 100)]), f)
    monkeypatch.setattr(subprocess, 'run', fake_run)
    monkeypatch.setattr(speed.sys, 'argv', ['speed.py', '--only', 'compiled',
                                            '--processes', '4'])
    out = tmp_path / 'out.json'
    with pytest.raises(subprocess.CalledProcessError):
        speed.run_processes(argparse.Namespace(processes=4, out=str(out)))
    written = json.loads(out.read_text())
    assert written['complete'] is False
    assert written['command'].endswith('--only compiled --processes 4')
    assert len(written['processes']) == 2
    assert written['summary'] == [dict(name='row', ratios=[1.01, 1.02],
                                       median_ratio=pytest.approx(1.015))]


def test_main_records_the_machine_and_the_flags_that_move_timings(
        speed, monkeypatch, tmp_path):
    """--out holds the machine (san_mm.analysis.timing.machine_info), glibc's
    allocator settings and dynamo's dict-tag option, which --dict-tag-guards
    turns on for the process."""
    import torch
    config = torch._dynamo.config
    seen = {}

    def bench(args):
        seen['option'] = config.use_recursive_dict_tags_for_guards
        speed._row('inference x', [1.0], [1.0])

    monkeypatch.setitem(speed.BENCHES, 'inference', bench)
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '131072')
    out = tmp_path / 'out.json'
    # config.patch restores the option, which main() sets for the process
    with config.patch(use_recursive_dict_tags_for_guards=False):
        monkeypatch.setattr('sys.argv', ['speed.py', '--only', 'inference',
                                         '--dict-tag-guards', '--out', str(out)])
        speed.main()
    assert seen == dict(option=True)
    written = json.loads(out.read_text())
    assert written['complete'] is True
    assert [row['name'] for row in written['rows']] == ['inference x']
    machine = written['machine']
    assert machine['device'] == 'cpu' and machine['threads'] >= 1
    assert machine['MALLOC_MMAP_THRESHOLD_'] == '131072'
    assert machine['dynamo'] == 'use_recursive_dict_tags_for_guards=True'


def _tiny_san_and_plain():
    """A 4-channel SAN ResNet-18 carrying a plain ResNet-18's weights."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import san_mm  # noqa: F401
    from san_mm.models.utils.plain_init import load_plain_into_san
    init_default_scope('mmpretrain')
    widths = dict(depth=18, stem_channels=4, base_channels=4)
    head = dict(type='LinearClsHead', num_classes=3, in_channels=32)
    san = MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', train_sizes=[32, 24], **widths),
        neck=dict(type='GlobalAveragePooling'), head=head))
    plain = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='ResNet', **widths),
        neck=dict(type='GlobalAveragePooling'), head=head))
    load_plain_into_san(san, plain.state_dict())
    return san.eval(), plain.eval()


@pytest.fixture(scope='module')
def tiny():
    return _tiny_san_and_plain()


def test_san_with_the_plain_weights_computes_the_plain_logits(speed, tiny):
    """What the inference rows compare: the same function, so the ratio is
    the cost of being adaptive alone; other kernels are refused."""
    import copy

    import torch
    san, plain = tiny
    x = speed.plain_weight_input(san, plain, 24, 2, 'cpu')
    assert x.shape == (2, 3, 24, 24)
    other = copy.deepcopy(san)
    with torch.no_grad():
        next(other.backbone.meta_convs()).weight_residual.fill_(0.5)
    with pytest.raises(AssertionError, match='differs from the plain model'):
        speed.plain_weight_input(other, plain, 24, 2, 'cpu')


def test_regenerating_generates_every_kernel_on_each_forward(speed, tiny):
    """The regenerate row's SAN: every generated conv makes its kernel on
    every forward, where the cached forward makes none."""
    import copy

    import torch
    san = copy.deepcopy(tiny[0])
    convs = list(san.backbone.meta_convs())
    generated = []
    for conv in convs:
        generate = conv.generate_kernel
        conv.generate_kernel = lambda *a, generate=generate: (
            generated.append(1) or generate(*a))
    run_san = speed.forward_of(san, torch.rand(1, 3, 24, 24))
    run_san()  # fills the caches
    generated.clear()
    run_san()
    assert generated == []
    speed.regenerating(san, run_san)()
    assert len(generated) == len(convs) > 0


class _Logits(__import__('torch').nn.Module):
    """A stand-in classifier: ``model(x, mode='tensor')`` gives logits."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.fc = __import__('torch').nn.Linear(3, 2)
        self.scale = scale

    def forward(self, x, mode='tensor'):
        return self.fc(x.mean((2, 3))) * self.scale


def test_compiled_rows_check_the_logits_and_time_each_guard_mode(
        speed, monkeypatch):
    """The compiled rows: each model's first call compiles (timed), the
    outputs are checked against the compiled plain model, and each guard
    mode gets its SAN row and its control, in the same rounds."""
    import copy

    import torch
    monkeypatch.setattr(speed, 'measure', lambda fn, min_run_time: fn() or 1.0)
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    plain = _Logits()
    models = dict(san=copy.deepcopy(plain), plain=plain,
                  copy=copy.deepcopy(plain))
    torch._dynamo.reset()
    compiled = {name: torch.compile(model, backend='eager', dynamic=False)
                for name, model in models.items()}
    args = argparse.Namespace(device='cpu', repeats=2, min_run_time=0.0)
    rows = speed.compiled_rows('compiled+frozen', 'resnet18', 8, 1, compiled,
                               [False, True], args)
    assert [row['name'] for row in rows] == [
        'compiled+frozen resnet18 r=8 b=1',
        '  control: plain copy vs plain, compiled+frozen resnet18 r=8 b=1',
        'compiled+frozen skip-guard-eval resnet18 r=8 b=1',
        '  control: plain copy vs plain, compiled+frozen skip-guard-eval '
        'resnet18 r=8 b=1']
    assert set(rows[0]['compile_seconds']) == {'san', 'plain', 'copy'}
    assert speed._RESULTS['rows'] == rows  # written as measured
    compiled['san'] = torch.compile(_Logits(scale=2.0), backend='eager')
    with pytest.raises(AssertionError, match='compiled san differs'):
        speed.compiled_rows('compiled', 'resnet18', 8, 1, compiled, [False],
                            args)


def _parameters(model):
    return [p.detach().clone() for p in model.parameters()]


def test_joint_and_per_size_steps_update_the_weights_alike(speed, tiny):
    """The train rows compare SAN's joint step and its per-size step with
    the plain steps: both are the same SGD step (one backward of the summed
    loss, or one per size)."""
    import copy

    import torch
    san, _ = tiny
    updated = []
    for per_size in (False, True):
        model = copy.deepcopy(san).train()
        torch.manual_seed(0)  # the same inputs
        speed.train_step(model, torch, [32, 24], 2, 'cpu',
                         per_size=per_size)()
        updated.append(_parameters(model))
    assert any(not torch.equal(a, b)
               for a, b in zip(_parameters(san), updated[0]))
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_train_step_in_bf16_goes_through_amp_and_steps(speed, monkeypatch,
                                                      tiny):
    """fp16 / bf16 rows: mmengine's AmpOptimWrapper (autocast in the
    forward), and the step updates the weights. The wrapper refuses to exist
    without CUDA; on a CPU it is let through, and autocast runs in bfloat16
    there."""
    import copy

    import torch
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    san = copy.deepcopy(tiny[0]).to(device).train()
    dtypes = []
    san.head.fc.register_forward_hook(
        lambda module, inputs, output: dtypes.append(output.dtype))
    before = san.head.fc.weight.detach().clone()
    speed.train_step(san, torch, [32, 24], 2, device, precision='bf16')()
    assert dtypes == [torch.bfloat16] * 2  # one forward per size, autocast
    assert not torch.equal(before, san.head.fc.weight)
    assert san.head.fc.weight.dtype == torch.float32  # master weights


def test_train_cuda_graph_is_refused_where_it_cannot_capture(speed):
    args = argparse.Namespace(train_cuda_graph=True, device='cpu',
                              train_compile=False)
    with pytest.raises(SystemExit, match='--device cpu'):
        speed.bench_train(args)
    args.device, args.train_compile = 'cuda', True
    with pytest.raises(SystemExit, match='--train-compile'):
        speed.bench_train(args)


def test_peak_of_saved_activations_counts_each_storage_once(speed):
    import torch
    tracker = speed.SavedActivations()
    x = torch.rand(256, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack,
                                                  lambda held: held.tensor):
        y = (x * x).sum()  # saves x twice: one storage, 1 KiB
        assert tracker.live == tracker.peak == 256 * 4
    y.backward()
    del y
    assert tracker.live == 0 and tracker.peak == 256 * 4


@pytest.mark.skipif(not __import__('torch').cuda.is_available(),
                    reason='CUDA graphs need a GPU')
def test_cuda_graph_of_san_replays_the_eager_forward(speed, tiny):
    import copy

    import torch
    san, plain = (copy.deepcopy(model).cuda() for model in tiny)
    x = torch.rand(1, 3, 24, 24, device='cuda')
    replay, output = speed.cuda_graph_of(lambda: san(x, mode='tensor'))
    x.copy_(torch.rand_like(x))  # the graph reads x's memory on replay
    replay()
    torch.cuda.synchronize()
    with torch.no_grad():
        expected = plain(x, mode='tensor')
    speed.check_same_logits(output, expected, 'the SAN graph', 'plain')


@pytest.mark.skipif(not __import__('torch').cuda.is_available(),
                    reason='CUDA graphs need a GPU')
@pytest.mark.parametrize('precision', ['fp32', 'fp16', 'bf16'])
def test_a_training_step_replayed_from_a_cuda_graph_is_the_eager_step(
        speed, monkeypatch, tiny, precision):
    """--train-cuda-graph: each replay is a whole SGD step (fp32: forward,
    backward and update in the graph; AMP: forward and scaled backward, the
    scaler's step eager), the eager step's kernels on the same inputs, also
    after the caller dropped everything but the replay and another graph
    was captured (the graph's inputs and momentum live outside its pool)."""
    import copy
    import gc

    import torch
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    san = copy.deepcopy(tiny[0]).cuda().train()
    twin, other = copy.deepcopy(san), copy.deepcopy(san)
    torch.manual_seed(0)  # the same inputs (batch 2: labels 0, 1)
    replayed_step = speed.train_step(  # 3 eager steps, then the capture
        san, torch, [32, 24], 2, 'cuda', precision=precision, graphed=True)
    torch.manual_seed(0)
    eager_step = speed.train_step(twin, torch, [32, 24], 2, 'cuda',
                                  precision=precision)
    speed.train_step(other, torch, [32], 2, 'cuda', precision=precision,
                     graphed=True)
    gc.collect()
    torch.cuda.empty_cache()
    replayed_step()
    replayed_step()
    for _ in range(5):
        eager_step()
    torch.cuda.synchronize()
    # fp32: a few roundings apart at most if a reduction's order differs;
    # AMP: one rounding of a half-precision value in a gradient
    rel = dict(fp32=1e-5, fp16=2**-11, bf16=2**-8)[precision]
    for got, expected in zip(san.parameters(), twin.parameters()):
        torch.testing.assert_close(got, expected, rtol=rel, atol=1e-6)
