"""benchmarks/speed.py's measuring protocol: what the ratios in the README
rest on (the models themselves are covered by the model tests)."""
import argparse

import pytest


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


def test_summary_splits_the_ratios_by_compile_order_when_both_ran(speed):
    san_first, plain_first = ['san', 'plain'], ['plain', 'san']
    processes = [
        [dict(name='c', ratio=1.04, compile_order=san_first)],
        [dict(name='c', ratio=1.00, compile_order=plain_first)],
        [dict(name='c', ratio=1.06, compile_order=san_first)],
        [dict(name='c', ratio=0.98, compile_order=plain_first)],
    ]
    row, = speed.summarise_processes(processes)
    assert row['median_ratio'] == pytest.approx(1.02)
    assert row['median_ratio_by_compile_order'] == {
        'san first': pytest.approx(1.05), 'plain first': pytest.approx(0.99)}
    # one order only: nothing to split
    row, = speed.summarise_processes(processes[::2])
    assert 'median_ratio_by_compile_order' not in row


def test_alternate_compile_order_alternates_between_processes(
        speed, monkeypatch, tmp_path):
    import json
    import subprocess
    orders = []

    def fake_run(command, check):
        # the last --compile-order is the one argparse keeps
        last = len(command) - 1 - command[::-1].index('--compile-order')
        orders.append(command[last + 1])
        out = command[command.index('--out', 3) + 1]
        with open(out, 'w') as f:
            json.dump(dict(machine='m', rows=[]), f)
    monkeypatch.setattr(subprocess, 'run', fake_run)
    monkeypatch.setattr(speed.sys, 'argv', [
        'speed.py', '--only', 'compiled', '--compile-order', 'alternate'])
    args = argparse.Namespace(processes=4, compile_order='alternate',
                              out=str(tmp_path / 'out.json'))
    speed.run_processes(args)
    assert orders == ['san-first', 'plain-first', 'san-first', 'plain-first']
    assert speed.compile_order(argparse.Namespace(
        compile_order='plain-first')) == ('plain', 'san')
    assert speed.compile_order(argparse.Namespace(
        compile_order='alternate')) == ('san', 'plain')


def test_processes_are_kept_when_a_later_one_fails(speed, monkeypatch,
                                                  tmp_path):
    """--processes N --out F: F is rewritten after every process, so the
    processes that finished are kept when a later one fails or the run is
    killed ("complete" false until the last one)."""
    import json
    import subprocess
    calls = []

    def fake_run(command, check):
        calls.append(command)
        if len(calls) == 3:
            raise subprocess.CalledProcessError(1, command)
        out = command[command.index('--out', 3) + 1]
        with open(out, 'w') as f:
            json.dump(dict(machine='m', rows=[
                dict(name='row', ratio=1.0 + len(calls) / 100)]), f)
    monkeypatch.setattr(subprocess, 'run', fake_run)
    monkeypatch.setattr(speed.sys, 'argv', ['speed.py', '--only', 'compiled'])
    out = tmp_path / 'out.json'
    args = argparse.Namespace(processes=4, compile_order='san-first',
                              out=str(out))
    with pytest.raises(subprocess.CalledProcessError):
        speed.run_processes(args)
    written = json.loads(out.read_text())
    assert written['complete'] is False
    assert len(written['processes']) == 2
    assert written['summary'] == [dict(name='row', ratios=[1.01, 1.02],
                                       median_ratio=pytest.approx(1.015))]


def test_without_a_control_only_the_san_row(speed, monkeypatch, capsys):
    monkeypatch.setattr(speed, 'measure', lambda fn, min_run_time: fn())
    args = argparse.Namespace(repeats=2, min_run_time=0.0)
    rows = speed.compare_with_control('inference x', lambda: 1.1, lambda: 1.0,
                                      None, '  control x', args)
    assert [row['name'] for row in rows] == ['inference x']
    assert rows[0]['ratio'] == pytest.approx(1.1)


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


def test_placement_calls_differ_only_in_the_kernel_tensor(speed):
    import torch
    san, plain = _tiny_san_and_plain()
    calls = speed.conv_calls(san, plain, torch.rand(1, 3, 24, 24))
    assert len(calls['san']) == len(list(san.backbone.meta_convs())) == 19
    for plain_call, san_call, clone_call in zip(calls['plain'], calls['san'],
                                                calls['clone']):
        kernels = [plain_call[2], san_call[2], clone_call[2]]
        assert len({k.data_ptr() for k in kernels}) == 3  # three tensors
        assert all(torch.equal(kernels[0], k) for k in kernels[1:])
        assert plain_call[:2] == san_call[:2] == clone_call[:2]
        out = plain_call[0](plain_call[1], san_call[2], None)
        assert torch.equal(out, plain_call[0](plain_call[1], kernels[0], None))
    # what is timed: all the convs in one call, without autograd
    assert speed.run_calls(calls['san'])() is None


def test_placement_refuses_a_san_model_with_other_kernels(speed):
    import torch
    san, plain = _tiny_san_and_plain()
    with torch.no_grad():
        next(iter(san.backbone.meta_convs())).weight_residual.fill_(0.5)
    with pytest.raises(AssertionError, match='differs from the plain weight'):
        speed.conv_calls(san, plain, torch.rand(1, 3, 24, 24))


@pytest.mark.parametrize('per_size', [False, True])
def test_train_step_in_bf16_goes_through_amp_and_steps(speed, monkeypatch,
                                                      per_size):
    """The train rows' fp16 / bf16 steps: mmengine's AmpOptimWrapper
    (autocast in the forward), and the step updates the weights. The
    wrapper refuses to exist without CUDA; on CPU it is let through, and
    autocast runs in bfloat16 there."""
    import torch
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    san, _ = _tiny_san_and_plain()
    san = san.to(device).train()  # autocast follows the CUDA device if any
    dtypes = []
    san.head.fc.register_forward_hook(
        lambda module, inputs, output: dtypes.append(output.dtype))
    before = san.head.fc.weight.detach().clone()
    step = speed._train_step_fn(san, torch, [32, 24], 2, device,
                                per_size=per_size, precision='bf16')
    step()
    assert dtypes == [torch.bfloat16] * 2  # one forward per size, autocast
    assert not torch.equal(before, san.head.fc.weight)
    assert san.head.fc.weight.dtype == torch.float32  # master weights


@pytest.mark.skipif(not __import__('torch').cuda.is_available(),
                    reason='CUDA graphs need a GPU')
def test_cuda_graph_of_san_replays_the_eager_forward(speed):
    import torch
    san, plain = _tiny_san_and_plain()
    san, plain = san.cuda(), plain.cuda()
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
        speed, monkeypatch, precision):
    """--train-cuda-graph: each replay is a whole SGD step (fp32: forward,
    backward and update in the graph; AMP: forward and scaled backward, the
    scaler's step eager), the eager step's kernels on the same inputs — also
    after the caller dropped everything but the replay and another graph was
    captured (the graph's inputs and momentum live outside its memory pool;
    a replay that did not keep them alive hit an illegal address on an
    H200 once the next capture had emptied the allocator's cache)."""
    import copy
    import gc

    import torch
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    san, _ = _tiny_san_and_plain()
    san = san.cuda().train()
    twin, other = copy.deepcopy(san), copy.deepcopy(san)
    torch.manual_seed(0)  # the same inputs (batch 2: labels 0, 1)
    replayed_step = speed._train_step_fn(  # 3 eager steps, then the capture
        san, torch, [32, 24], 2, 'cuda', precision=precision, graphed=True)
    torch.manual_seed(0)
    eager_step = speed._train_step_fn(twin, torch, [32, 24], 2, 'cuda',
                                      precision=precision)
    speed._train_step_fn(other, torch, [32], 2, 'cuda', precision=precision,
                         graphed=True)
    gc.collect()
    torch.cuda.empty_cache()
    replayed_step()
    replayed_step()
    for _ in range(5):
        eager_step()
    torch.cuda.synchronize()
    # fp32: a few roundings apart at most if a reduction's order differs;
    # AMP: one rounding of a half-precision value (float16 2^-11, bfloat16
    # 2^-8 relative) in a gradient is the most such an order can move
    rel = dict(fp32=1e-5, fp16=2**-11, bf16=2**-8)[precision]
    for got, expected in zip(san.parameters(), twin.parameters()):
        torch.testing.assert_close(got, expected, rtol=rel, atol=1e-6)


def test_train_cuda_graph_is_refused_where_it_cannot_capture(speed):
    args = argparse.Namespace(train_cuda_graph=True, device='cpu',
                              train_compile=False, precisions=['fp32'])
    with pytest.raises(SystemExit, match='--device cpu'):
        speed.bench_train(args)
    args.device, args.train_compile = 'cuda', True
    with pytest.raises(SystemExit, match='--train-compile'):
        speed.bench_train(args)


def test_each_row_is_written_when_measured(speed, monkeypatch, tmp_path):
    """A run stopped by a timeout keeps the rows it measured."""
    import json
    out = tmp_path / 'rows.json'
    monkeypatch.setitem(speed._RESULTS, 'path', str(out))
    monkeypatch.setitem(speed._RESULTS, 'machine', 'test machine')
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    speed._row('first', [2.0, 2.2], [2.0, 2.0])
    written = json.loads(out.read_text())
    assert written['complete'] is False
    assert written['machine'] == 'test machine'
    assert [row['name'] for row in written['rows']] == ['first']
    assert written['rows'][0]['ratio'] == pytest.approx(1.05)
    speed._row('second', [1.0], [1.0])
    speed._save_results(complete=True)
    written = json.loads(out.read_text())
    assert written['complete'] is True
    assert [row['name'] for row in written['rows']] == ['first', 'second']


def test_count_ops_counts_what_computes(speed):
    import torch
    x = torch.ones(3, 4)
    counts = speed.count_ops(
        lambda: (x + 1).view(-1).mul_(2).unsqueeze(0).sum())
    # the views (view, unsqueeze) launch nothing and are not counted
    assert counts == {'aten.add': 1, 'aten.mul_': 1, 'aten.sum': 1}


def test_generated_program_is_the_same_for_the_same_kernels_only(speed):
    """--only codegen: two networks of the same layers with different
    weights compile (frozen: the weights become different constants) to the
    same normalised program; another activation to another one."""
    import torch
    import torch._inductor.config as inductor_config

    def program(activation, seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                    torch.nn.BatchNorm2d(4), activation)
        torch._dynamo.reset()
        compiled = torch.compile(model.eval(), dynamic=False)
        x = torch.rand(2, 3, 8, 8)
        return speed.generated_program(speed.without_grad(
            lambda: compiled(x)))

    with inductor_config.patch(freezing=True):
        relu = program(torch.nn.ReLU(), 0)
        assert program(torch.nn.ReLU(), 1) == relu
        assert program(torch.nn.Sigmoid(), 0) != relu
    assert speed.kernel_calls(relu) >= 1
    assert not [line for line in relu if '_frozen_param' in line]


@pytest.mark.parametrize('frozen', [False, True])
def test_guard_groups_are_sans_own_and_leaving_one_out_keeps_the_rest(
        speed, frozen):
    """--guard-attribution: each SAN guard group names guards that SAN's
    compiled forward has and the plain model's has not; compiled without
    it, SAN keeps every other guard and still runs as one graph."""
    import torch
    import torch._inductor.config as inductor_config
    with inductor_config.patch(freezing=frozen):
        _check_guard_groups(speed, torch)


def _check_guard_groups(speed, torch):
    san, plain = _tiny_san_and_plain()
    x = torch.rand(1, 3, 24, 24)
    torch._dynamo.reset()
    _, plain_guards, plain_kept = speed.outputs_only_call(
        plain, x, torch, drop=lambda name: any(
            in_group(name) for _, in_group in speed.SAN_GUARD_GROUPS.values()))
    assert plain_kept == plain_guards > 0  # no plain guard is in a group
    _, all_guards, kept = speed.outputs_only_call(san, x, torch)
    assert kept == all_guards
    for group, in_group in speed.SAN_GUARD_GROUPS.values():
        torch._dynamo.reset()
        names = []
        call, guards, kept = speed.outputs_only_call(
            san, x, torch,
            drop=lambda name: names.append(name) or in_group(name))
        assert guards == all_guards == len(names)
        assert 0 < guards - kept == sum(map(in_group, names)), group
        with torch.compiler.set_stance('fail_on_recompile'):
            call()  # what is timed runs the compiled graph, no other


def test_without_guards_filters_only_that_group(speed, monkeypatch, capsys):
    from types import SimpleNamespace
    assert speed.without_guards(None) == {}
    keep = speed.without_guards('sets')['options']['guard_filter_fn']
    names = ["L['self']._modules['bn']._modules['sets']._modules['4'].eps",
             "L['self']._modules['bn']._set_keys",
             "L['self']._modules['conv']._parameters['weight_residual']",
             "L['self']._modules['bn'].scale_context"]
    assert keep([SimpleNamespace(name=n) for n in names]) == [
        False, False, True, True]
    monkeypatch.setattr('sys.argv', [
        'speed.py', '--only', 'compiled', '--san-without-guards', 'sets',
        '--compile-mode', 'reduce-overhead'])
    with pytest.raises(SystemExit):
        speed.main()
    assert 'drop --compile-mode reduce-overhead' in capsys.readouterr().err


def test_dict_tag_guards_turns_on_dynamos_option_and_records_it(
        speed, monkeypatch):
    import torch
    config = torch._dynamo.config
    seen = {}

    def bench_dynamo(args):
        seen['option'] = config.use_recursive_dict_tags_for_guards
        return []

    monkeypatch.setattr(speed, 'bench_dynamo', bench_dynamo)
    # config.patch restores the option, which main() sets for the whole
    # process (monkeypatch.setattr cannot: a config module keeps its options
    # out of its __dict__, so pytest would delete the option on undo)
    with config.patch(use_recursive_dict_tags_for_guards=False):
        monkeypatch.setattr('sys.argv', ['speed.py', '--only', 'dynamo'])
        speed.main()
        assert seen == dict(option=False)
        monkeypatch.setattr(
            'sys.argv', ['speed.py', '--only', 'dynamo', '--dict-tag-guards'])
        speed.main()
        assert seen == dict(option=True)
    assert config.use_recursive_dict_tags_for_guards is False
    assert 'use_recursive_dict_tags_for_guards=True' in \
        speed._RESULTS['machine']


def test_set_path_group_is_the_second_module_level_only(speed):
    """--guard-attribution's set-path group: how a private BN reaches its
    active set (what a plain BN does not have), not the set's own guards
    (its eps, training flag and tensors, which a plain BN has too)."""
    bn = "L['self']._modules['backbone']._modules['conv1']._modules['bn']"
    sets = bn + "._modules['sets']"
    active = sets + "._modules['4']"
    on_the_path = [sets, sets + '.__dict__', sets + '._modules', active,
                   active + '._forward_hooks', active + '._forward_pre_hooks',
                   bn + '._set_keys']
    own = [active + '.' + attr for attr in (
        'eps', 'training', "_buffers['running_mean']",
        "_parameters['weight']", '_buffers')]
    assert all(map(speed.on_the_set_path, on_the_path))
    assert not any(map(speed.on_the_set_path, own + [bn + '.scale_context']))
    in_sets = speed.SAN_GUARD_GROUPS['sets'][1]
    assert all(map(in_sets, on_the_path + own))  # 'sets' holds both


@pytest.mark.parametrize('part,compiled,label', [
    ('model', 'classifier', 'compiled+frozen'),
    ('backbone', 'backbone', 'compiled+frozen backbone'),
    ('backbone-method', 'backbone', 'compiled+frozen backbone .compile()')])
def test_codegen_compiles_the_part_asked_for(speed, monkeypatch, part,
                                             compiled, label):
    """--only codegen follows --compile-part: the classifier's program has
    the head's linear layer, the backbone's has not; each row says which
    part it compiled. Frozen, the two tiny models compile to the same
    program."""
    import torch
    from types import SimpleNamespace
    monkeypatch.setattr(speed, 'san_and_plain',
                        lambda arch, device: (*_tiny_san_and_plain(), torch))
    programs, generated_program = [], speed.generated_program

    def kept_program(call):
        programs.append(generated_program(call))
        return programs[-1]

    monkeypatch.setattr(speed, 'generated_program', kept_program)
    args = SimpleNamespace(archs=['resnet18'], device='cpu', freeze='only',
                           sizes=[24], batches=[1], compile_part=part)
    [row] = speed.bench_codegen(args)
    assert row['name'] == f'codegen {label} resnet18 r=24 b=1'
    assert row['same_program'], row
    has_linear = [any('addmm' in line or 'linear' in line for line in program)
                  for program in programs]
    assert has_linear == [compiled == 'classifier'] * 2


@pytest.mark.parametrize('kind,order', [
    ('eager', ['san', 'plain', 'copy', 'regenerate',
               'plain', 'copy', 'regenerate', 'san']),
    ('compiled+frozen', ['san', 'plain', 'copy', 'plain', 'copy', 'san'])])
def test_instructions_child_counts_each_model_once_per_round(
        speed, monkeypatch, tmp_path, kind, order):
    """Under callgrind, each count is one dump: collection toggled on, the
    forwards, then off and dumped; the manifest names each dump's model in
    order, every model once per round, rotating which goes first (compiled:
    no regenerating model, its kernels are folded into the graph)."""
    import functools
    import json

    import torch
    monkeypatch.setattr(speed, 'san_and_plain',
                        lambda arch, device: (*_tiny_san_and_plain(), torch))
    # the protocol, not inductor: the compiled kind with dynamo alone
    monkeypatch.setattr(torch, 'compile',
                        functools.partial(torch.compile, backend='eager'))
    events = []
    monkeypatch.setattr(torch._C, '_valgrind_toggle',
                        lambda: events.append('on'))
    monkeypatch.setattr(torch._C, '_valgrind_toggle_and_dump_stats',
                        lambda: events.append('dump'))
    manifest = tmp_path / 'manifest.json'
    plan = dict(arch='resnet18', sizes=[24], batches=[1], rounds=2,
                number=2, kinds=[kind])
    speed.instructions_child(str(manifest), json.dumps(plan))
    counted = json.loads(manifest.read_text())
    assert events == ['on', 'dump'] * len(order)
    assert [entry['model'] for entry in counted] == order
    assert {(tuple(entry['case']), entry['kind']) for entry in counted} == {
        (('resnet18', 24, 1), kind)}
    half = len(order) // 2
    assert [entry['round'] for entry in counted] == [0] * half + [1] * half


def test_instruction_rows_are_per_forward_ratios_with_a_control(
        speed, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(speed._RESULTS, 'path', None)
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    # a callgrind dump as valgrind writes it: the total is on 'totals:'
    dump = tmp_path / 'callgrind.out.1'
    dump.write_text('version: 1\ncreator: callgrind-3.19.0\npart: 1\n'
                    'events: Ir\nfn=(1) f\n16 300\nsummary: 300\n'
                    'totals: 300\n')
    assert speed.callgrind_total(str(dump)) == 300
    (tmp_path / 'empty').write_text('events: Ir\n')
    with pytest.raises(ValueError, match='no "totals:" line'):
        speed.callgrind_total(str(tmp_path / 'empty'))
    (tmp_path / 'wrapped').write_text(f'events: Ir\ntotals: {2**64 - 7}\n')
    with pytest.raises(ValueError, match=r'wrapped around \(2\*\*64 - 7\)'):
        speed.callgrind_total(str(tmp_path / 'wrapped'))

    case = ['resnet18', 96, 1]
    counted = [dict(case=case, kind='eager', model=model, round=r)
               for r in range(2)
               for model in speed.INSTRUCTION_MODELS['eager']]
    counted += [dict(case=case, kind='compiled+frozen', model=model, round=0)
                for model in speed.INSTRUCTION_MODELS['compiled+frozen']]
    per_forward = [102.0, 100.0, 100.0, 150.0, 104.0, 100.0, 101.0, 160.0,
                   50.0, 49.0, 48.0]
    conv, add, getattr_ = ('conv @ libtorch_cpu.so', 'add @ libtorch_cpu.so',
                           'getattr @ libpython3.11.so')
    eager = ('resnet18', 96, 1, 'eager')
    functions = {(*eager, 'san'): {conv: 60, add: 9, getattr_: 30},
                 (*eager, 'plain'): {conv: 60, add: 3, getattr_: 36}}
    rows = speed.instruction_rows(counted, per_forward, functions, number=3)
    assert [row['name'] for row in rows] == [
        'instructions per forward resnet18 r=96 b=1',
        '  control: plain copy vs plain resnet18 r=96 b=1',
        '  regenerate-every-forward vs cached resnet18 r=96 b=1',
        'instructions per forward, compiled+frozen resnet18 r=96 b=1',
        '  control: plain copy vs plain, compiled+frozen resnet18 r=96 b=1']
    assert rows[0]['ratio'] == pytest.approx(1.03)
    assert rows[0]['san'] == dict(min=102.0, median=103.0, max=104.0)
    # per forward: the dump's counts over the 3 forwards it holds
    assert rows[0]['difference'] == {add: 2.0, getattr_: -2.0}
    assert rows[0]['difference_by_library'] == {'libtorch_cpu.so': 2.0,
                                                'libpython3.11.so': -2.0}
    assert rows[1]['ratio'] == pytest.approx(1.005)
    assert rows[2]['ratio'] == pytest.approx(155.0 / 103.0)
    assert rows[3]['ratio'] == pytest.approx(50.0 / 49.0)
    assert rows[3]['difference'] == {}  # no functions read for this kind
    assert rows[4]['ratio'] == pytest.approx(48.0 / 49.0)
    assert 'ratio 1.0300' in capsys.readouterr().out


def test_callgrind_functions_sums_run_time_generated_code(speed, monkeypatch):
    """oneDNN's JIT kernels have no names, only addresses that differ
    between processes: one entry for all of them. The frames that were on
    the stack when counting began are each credited with the whole count
    and are left out."""
    from types import SimpleNamespace
    annotated = ('Ir\n300  PROGRAM TOTALS\n\nIr  file:function\n'
                 '300  python.c:main [python3.11]\n'  # on the stack: all
                 '200  ???:mkl_sgemm [/venv/torch/lib/libtorch_cpu.so]\n'
                 ' 10  Objects/dictobject.c:at::x::y(int)\n'
                 ' 60  ???:0x00000000f39e7000\n'
                 ' 40  ???:0x00000000f3927000\n')
    monkeypatch.setattr(speed.subprocess, 'run', lambda *a, **k:
                        SimpleNamespace(stdout=annotated))
    assert speed.callgrind_functions('dump') == {
        'mkl_sgemm @ libtorch_cpu.so': 200,
        'at::x::y(int) @ ?': 10, 'code generated at run time @ JIT': 100}


def test_instructions_refuse_without_valgrind_or_on_a_gpu(speed, monkeypatch):
    from types import SimpleNamespace
    args = SimpleNamespace(device='cuda', archs=['resnet18'], sizes=[96],
                           batches=[1], repeats=1, instruction_forwards=1,
                           instruction_kinds=['eager'], dict_tag_guards=False)
    with pytest.raises(SystemExit, match='--device cpu, not cuda'):
        speed.bench_instructions(args)
    args.device = 'cpu'
    monkeypatch.setattr('shutil.which', lambda name: None)
    with pytest.raises(SystemExit, match='apt-get install valgrind'):
        speed.bench_instructions(args)


def test_callgrind_shim_starts_instrumentation_where_it_can_be_built(
        speed, monkeypatch, tmp_path):
    """Built where valgrind's header and gcc are: its call is callgrind's
    client request, which does nothing outside valgrind. Elsewhere None (the
    child then runs instrumented throughout)."""
    import ctypes
    import os
    import shutil
    if os.path.exists('/usr/include/valgrind/callgrind.h') and shutil.which(
            'gcc'):
        shim = ctypes.CDLL(speed.callgrind_shim(str(tmp_path)))
        shim.start_instrumentation()
    monkeypatch.setattr('shutil.which', lambda name: None)
    assert speed.callgrind_shim(str(tmp_path / 'elsewhere')) is None


def test_instructions_count_each_architecture_in_its_own_child(
        speed, monkeypatch, capsys):
    """Each child switches instrumentation on after building (and
    compiling) its models: one child per architecture, rows as each ends."""
    from types import SimpleNamespace
    monkeypatch.setitem(speed._RESULTS, 'path', None)
    monkeypatch.setitem(speed._RESULTS, 'rows', [])
    monkeypatch.setattr('shutil.which', lambda name: '/usr/bin/' + name)
    monkeypatch.setattr(speed, 'callgrind_shim', lambda folder: None)
    plans = []

    def counted(plan, prefix):
        plans.append(plan)
        arch = plan['arch']
        entries = [dict(case=[arch, 96, 1], kind='eager', model=model,
                        round=0)
                   for model in speed.INSTRUCTION_MODELS['eager']]
        return entries, [3.0, 2.0, 2.0, 4.0], {}

    monkeypatch.setattr(speed, 'counted_under_callgrind', counted)
    args = SimpleNamespace(device='cpu', archs=['resnet50', 'mobilenetv2'],
                           sizes=[96], batches=[1], repeats=1,
                           instruction_forwards=1, instruction_kinds=['eager'],
                           dict_tag_guards=False)
    rows = speed.bench_instructions(args)
    assert [plan['arch'] for plan in plans] == ['resnet50', 'mobilenetv2']
    assert [row['name'] for row in rows[::3]] == [
        'instructions per forward resnet50 r=96 b=1',
        'instructions per forward mobilenetv2 r=96 b=1']
    assert rows[0]['ratio'] == pytest.approx(1.5)
