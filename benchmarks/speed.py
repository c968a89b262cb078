"""Speed and memory of SAN against plain mmpretrain models, side by side in one run.

    python benchmarks/speed.py --only inference --batches 1 --control --processes 3
    python benchmarks/speed.py --only compiled --freeze only --guard-eval both --control
    python benchmarks/speed.py --only train --archs resnet18 --train-batch 8
    python benchmarks/speed.py --device cuda --only cudagraph --batches 1 --control
    bash benchmarks/cpu_rows.sh                  # every CPU row of docs/performance.md
    bash benchmarks/cuda_rows.sh OUT_DIR         # every GPU row (on a GPU machine)

Protocol: each comparison times its models in --repeats rounds; a round times each model once
(san_mm.analysis.timing.median_seconds: torch.utils.benchmark's blocked_autorange over at least
--min-run-time seconds) and starts one model later than the round before, so neither drift nor
the order favours one. A row gives min / median / max of the rounds' times and the ratio of the
medians (SAN / plain). --control adds the A/A control: the plain model against a deep copy of
itself, timed in the same rounds, the ratio two identical models get on this machine.
--processes N repeats the whole run in N fresh processes and reports each row's median ratio over
them (where a process places its tensors moves batch-1 ratios by a few %). --out is rewritten
after every row ("complete": false until the run ends): a run stopped early keeps its rows.

  inference  eval forward with cached kernels vs mmpretrain's ResNet / MobileNetV2 carrying the
             same weights (SAN with B = the plain kernel, A = 0, the plain BN in every set: equal
             logits, checked); and SAN regenerating every kernel on every forward vs cached
  compiled   the same through torch.compile(dynamic=False), one static graph per size; --freeze:
             with inductor's freezing too (only: only with it); --guard-eval skip / both: also
             with dynamo's guards skipped once every shape is compiled (how a server runs a
             model that no longer changes); --compile-mode reduce-overhead: CUDA graphs
  cudagraph  (CUDA) the eager forwards captured in a CUDA graph and replayed, checked against eager
  train      one SAN step over the five sizes (forward, backward, SGD) vs the five plain steps,
             one per size: joint backward, joint with batched kernel generation, per-size
             backward; in each of --precisions (fp16 / bf16: mmengine's AmpOptimWrapper); peak
             memory of each against the largest plain step (fresh processes); --train-compile:
             both backbones compiled as the SAN loops do; --train-cuda-graph: every step
             replayed from its own CUDA graph
  pipeline   images/s of LoadImageFromFile + ResolutionSample (one crop -> five sizes) vs
             LoadImageFromFile + RandomResizedCrop + RandomFlip at one size, the same JPEGs
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ARCHS = {
    'resnet18': (dict(type='MetaResNet', depth=18),
                 dict(type='ResNet', depth=18, zero_init_residual=False), 512),
    'resnet50': (dict(type='MetaResNet', depth=50),
                 dict(type='ResNet', depth=50, zero_init_residual=False), 2048),
    'mobilenetv2': (dict(type='MetaMobileNetV2'), dict(type='MobileNetV2'),
                    1280),
}
TRAIN_SIZES = [224, 192, 160, 128, 96]
PRECISIONS = dict(fp32=None, fp16='float16', bf16='bfloat16')
# SAN's training steps: (label, per-size backward, batch_kernel_generation)
SAN_STEPS = [('joint backward', False, False),
             ('joint backward, batched kernels', False, True),
             ('per-size backward', True, False)]


def build(arch, san, device):
    """A SAN or plain mmpretrain classifier of ``arch`` with 1000 classes."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import san_mm  # noqa: F401  (registers the SAN modules)
    init_default_scope('mmpretrain')
    san_backbone, plain_backbone, channels = ARCHS[arch]
    model = MODELS.build(dict(
        type='SANClassifier' if san else 'ImageClassifier',
        backbone=san_backbone if san else plain_backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000,
                  in_channels=channels)))
    return model.to(device), torch


def san_and_plain(arch, device):
    """A SAN model and the plain model, in eval, with the same weights:
    both compute the same activations, so their time ratio is the cost of
    being adaptive alone (two random inits would differ in activation
    magnitudes, and in how often the CPU meets slow denormals)."""
    from san_mm.models.utils.plain_init import load_plain_into_san
    san, torch = build(arch, True, device)
    plain, _ = build(arch, False, device)
    load_plain_into_san(san, plain.state_dict())
    return san.eval(), plain.eval(), torch


def without_grad(call):
    """``call`` (no arguments) wrapped to run without autograd."""
    import torch

    def run():
        with torch.no_grad():
            call()
    return run


def forward_of(model, x):
    """A call that runs ``model`` on ``x`` without autograd, to be timed."""
    return without_grad(lambda: model(x, mode='tensor'))


def measure(fn, min_run_time):
    """Median seconds per call of ``fn``: san_mm's one timing harness."""
    from san_mm.analysis.timing import median_seconds
    return median_seconds(fn, min_run_time)


def rotation(count, round_index):
    """Indices 0..count-1 starting at ``round_index`` (mod count): the order
    of a round, one later each round."""
    return [(round_index + offset) % count for offset in range(count)]


def interleaved_times(fns, args, repeats=None, warmup=2):
    """Per-round median seconds of each of ``fns``: every round times each
    once, in :func:`rotation` order."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for round_index in range(repeats or args.repeats):
        for i in rotation(len(fns), round_index):
            times[i].append(measure(fns[i], args.min_run_time))
    return times


def compare(name, san_fn, plain_fn, args, repeats=None, warmup=2):
    """The row ``name``: SAN and plain timed in the same rounds."""
    san_times, plain_times = interleaved_times([san_fn, plain_fn], args,
                                               repeats, warmup)
    return _row(name, san_times, plain_times)


def compare_with_control(name, san_fn, plain_fn, copy_fn, control_name,
                         args):
    """SAN vs plain and, unless ``copy_fn`` is None, the A/A control (a copy
    of the plain model vs plain) timed in the same rounds, so that the
    control sees the machine the SAN row saw."""
    if copy_fn is None:
        return [compare(name, san_fn, plain_fn, args)]
    san_times, plain_times, copy_times = interleaved_times(
        [san_fn, plain_fn, copy_fn], args)
    return [_row(name, san_times, plain_times),
            _row(control_name, copy_times, plain_times)]


# --out as the run goes: every row is written when it is measured, so a run
# stopped by a timeout or a kill keeps what it measured ("complete": false)
_RESULTS = dict(path=None, machine=None, command=None, rows=[])


def _save_results(complete):
    if _RESULTS['path']:
        with open(_RESULTS['path'], 'w') as f:
            json.dump(dict(machine=_RESULTS['machine'],
                           command=_RESULTS['command'], complete=complete,
                           rows=_RESULTS['rows']), f, indent=1)


def _record(row):
    """Keep ``row`` and rewrite --out with it."""
    _RESULTS['rows'].append(row)
    _save_results(complete=False)
    return row


def _stats(times):
    return dict(min=min(times), median=statistics.median(times),
                max=max(times))


def _fmt(s):
    return (f'{s["min"] * 1e3:8.2f}/{s["median"] * 1e3:8.2f}/'
            f'{s["max"] * 1e3:8.2f} ms')


def _row(name, san_times, plain_times):
    ratio = statistics.median(san_times) / statistics.median(plain_times)
    row = dict(name=name, san=_stats(san_times), plain=_stats(plain_times),
               ratio=ratio)
    print(f'{name:46s} SAN {_fmt(row["san"])}  plain {_fmt(row["plain"])}  '
          f'ratio {ratio:.3f}', flush=True)
    return _record(row)


def check_same_logits(got, expected, what, reference):
    """Raise unless ``got`` equals ``expected`` up to float32 rounding of
    reordered sums (1e-4 of the logits' scale; 1e-2 on CUDA with TF32
    convolutions, PyTorch's default for cuDNN): a timed pair must compute
    the same function."""
    import torch
    tolerance = 1e-2 if (expected.is_cuda and
                         torch.backends.cudnn.allow_tf32) else 1e-4
    gap = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    if gap > tolerance * max(scale, 1.0):
        raise AssertionError(f'{what} differs from {reference} by {gap} '
                             f'(logits up to {scale}); a timed pair must '
                             'compute the same logits')


def plain_weight_input(san, plain, size, batch, device):
    """A random batch at ``size`` on which SAN (carrying the plain model's
    weights) computes the plain model's logits (checked)."""
    import torch
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad():
        check_same_logits(san(x, mode='tensor'), plain(x, mode='tensor'),
                          'SAN with the plain weights', 'the plain model')
    return x


def regenerating(san, run_san):
    """``run_san`` with every generated kernel regenerated first, as the
    reference implementation does on every forward."""
    def run():
        for conv in san.backbone.meta_convs():
            conv.clear_kernel_cache()
        run_san()
    return run


def bench_inference(args):
    rows = []
    for arch in args.archs:
        san, plain, _ = san_and_plain(arch, args.device)
        plain_copy = copy.deepcopy(plain) if args.control else None
        for size in args.sizes:
            for batch in args.batches:
                case = f'{arch} r={size} b={batch}'
                x = plain_weight_input(san, plain, size, batch, args.device)
                run_san, run_plain = forward_of(san, x), forward_of(plain, x)
                rows += compare_with_control(
                    f'inference {case}', run_san, run_plain,
                    forward_of(plain_copy, x) if args.control else None,
                    f'  control: plain copy vs plain {case}', args)
                rows.append(compare(
                    f'  regenerate-every-forward vs cached {case}',
                    regenerating(san, run_san), run_san, args))
    return rows


def served(compiled, x, skip_guards):
    """A timed call of ``compiled`` on ``x``; ``skip_guards``: inside
    ``set_stance(skip_guard_eval_unsafe=True)``, which checks only the
    guards that tell the compiled graphs apart (here the input shape)."""
    import torch
    call = forward_of(compiled, x)
    if not skip_guards:
        return call

    def steady_state():
        with torch.compiler.set_stance('default',
                                       skip_guard_eval_unsafe=True):
            call()
    return steady_state


def bench_compiled(args):
    """Compiled SAN vs compiled plain model (and the compiled copy), same
    weights, ``torch.compile(dynamic=False)``: one static graph per size."""
    import torch._inductor.config as inductor_config

    from san_mm.engine.compile import allow_graphs
    allow_graphs(6 * len(args.sizes) * len(args.batches))
    freezes = dict(none=[False], both=[False, True], only=[True])[args.freeze]
    skips = dict(full=[False], both=[False, True], skip=[True])[args.guard_eval]
    rows = []
    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        models = dict(san=san, plain=plain)
        if args.control:
            models['copy'] = copy.deepcopy(plain)
        for freeze in freezes:
            label = ('compiled+frozen' if freeze else 'compiled') + (
                f' {args.compile_mode}' if args.compile_mode else '')
            torch._dynamo.reset()
            with inductor_config.patch(freezing=freeze):
                compiled = {name: torch.compile(model, dynamic=False,
                                                mode=args.compile_mode)
                            for name, model in models.items()}
                for size in args.sizes:
                    for batch in args.batches:
                        rows += compiled_rows(label, arch, size, batch,
                                              compiled, skips, args)
    return rows


def compiled_rows(label, arch, size, batch, compiled, skips, args):
    """The rows of one size and batch: each model's first call compiles
    (timed, as ``compile_seconds``), the next ones are checked against the
    plain model (reduce-overhead records its CUDA graph on the second call
    and replays from the third: clones, since a replay rewrites its
    outputs), then SAN / plain / copy are timed per guard mode."""
    import torch
    x = torch.rand(batch, 3, size, size, device=args.device)
    compile_s = {}
    with torch.no_grad():
        for name, model in compiled.items():
            start = time.perf_counter()
            model(x, mode='tensor')
            compile_s[name] = time.perf_counter() - start
        for _ in range(2):
            outputs = {name: model(x, mode='tensor').clone()
                       for name, model in compiled.items()}
    for name, output in outputs.items():
        check_same_logits(output, outputs['plain'], f'compiled {name}',
                          'the compiled plain model')
    rows = []
    for skip in skips:
        name = label + (' skip-guard-eval' if skip else '')
        case = f'{arch} r={size} b={batch}'
        calls = {key: served(model, x, skip)
                 for key, model in compiled.items()}
        found = compare_with_control(
            f'{name} {case}', calls['san'], calls['plain'], calls.get('copy'),
            f'  control: plain copy vs plain, {name} {case}', args)
        found[0]['compile_seconds'] = compile_s
        rows += found
    return rows


def cuda_graph_of(fn, grad=False, warmup=None):
    """``fn`` (no arguments) captured in a CUDA graph: the replay, and the
    output it rewrites on every replay. Warmed up on a side stream first
    (three calls of ``warmup``, default ``fn``), as capturing requires (SAN's
    eval forward fills its kernel cache there, so the graph replays exactly
    the eager forward's kernels). With ``grad`` ``fn`` is a training step or
    its forward and backward: the gradients are allocated by the graph."""
    import torch
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.set_grad_enabled(grad):
        for _ in range(3):
            (warmup or fn)()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.set_grad_enabled(grad):
        output = fn()

    def replay():
        graph.replay()
    # the graph reads and writes memory outside its own pool (fn's inputs,
    # the optimizer's momentum): the replay keeps fn, and so that memory,
    # alive, or a later capture's empty_cache frees it under the graph
    replay.captured_fn = fn
    return replay, output


def bench_cudagraph(args):
    """SAN vs plain, eager forwards captured whole in a CUDA graph, the
    replayed logits checked against the eager plain model's."""
    import torch
    if not args.device.startswith('cuda'):
        raise SystemExit('--only cudagraph needs a CUDA device '
                         f'(--device cuda), got --device {args.device}')
    rows = []
    for arch in args.archs:
        san, plain, _ = san_and_plain(arch, args.device)
        models = dict(san=san, plain=plain)
        if args.control:
            models['copy'] = copy.deepcopy(plain)
        for size in args.sizes:
            for batch in args.batches:
                x = torch.rand(batch, 3, size, size, device=args.device)
                with torch.no_grad():
                    expected = plain(x, mode='tensor')
                replays = {}
                for name, model in models.items():
                    replay, output = cuda_graph_of(
                        lambda m=model: m(x, mode='tensor'))
                    replay()
                    torch.cuda.synchronize()
                    check_same_logits(output, expected,
                                      f'CUDA graph of {name} {arch}',
                                      'the eager plain model')
                    replays[name] = replay
                case = f'{arch} r={size} b={batch}'
                rows += compare_with_control(
                    f'cuda graph {case}', replays['san'], replays['plain'],
                    replays.get('copy'),
                    f'  control: plain copy vs plain, cuda graph {case}',
                    args)
    return rows


def train_step(model, torch, sizes, batch, device, per_size=False,
               precision='fp32', graphed=False):
    """One SGD step at ``sizes``: the joint loss and one backward, or (SAN,
    ``per_size``) ``SANClassifier.update_per_size`` (one backward per size).
    fp16 / bf16 go through mmengine's AmpOptimWrapper (``tools/train.py
    --amp``). ``graphed``: replayed from a CUDA graph, the whole step in
    fp32; with AMP the forward and scaled backward, the loss scaler's step
    eager after each replay (it reads its overflow check on the host)."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmpretrain.structures import DataSample
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    if PRECISIONS[precision] is None:
        wrapper = OptimWrapper(optimizer)
    else:
        wrapper = AmpOptimWrapper(optimizer=optimizer,
                                  dtype=PRECISIONS[precision])
    inputs = [torch.rand(batch, 3, s, s, device=device) for s in sizes]
    samples = [DataSample().set_gt_label(i % 1000).to(device)
               for i in range(batch)]

    def loss():
        with wrapper.optim_context(model):
            losses = model.loss(inputs if len(inputs) > 1 else inputs[0],
                                samples)
        return sum(v for k, v in losses.items() if 'loss' in k)

    def step():
        if per_size:
            model.update_per_size(inputs, samples, wrapper)
        else:
            wrapper.update_params(loss())

    if not graphed:
        return step
    if PRECISIONS[precision] is None:
        return cuda_graph_of(step, grad=True)[0]
    if per_size:
        raise ValueError('a graphed AMP step captures one forward and '
                         'backward; run per_size steps eagerly')
    replay = cuda_graph_of(
        lambda: wrapper.loss_scaler.scale(loss()).backward(), grad=True,
        warmup=step)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]  # the graph's, rewritten per replay

    def replayed_step():
        replay()
        for p, grad in zip(params, grads):
            p.grad = grad
        wrapper.step()
        wrapper.zero_grad()
    return replayed_step


def plain_steps(plain, torch, args, precision='fp32', graphed=False):
    """One call running the five plain single-size steps, one per size."""
    steps = [train_step(plain, torch, [s], args.train_batch, args.device,
                        precision=precision, graphed=graphed)
             for s in TRAIN_SIZES]

    def run():
        for step in steps:
            step()
    return run


def san_step(san, torch, args, per_size, batched, precision='fp32',
             graphed=False):
    """One call running SAN's step over the five sizes, its kernels batched
    (``batch_kernel_generation``) or not."""
    san.batch_kernel_generation = batched  # also what a capture records
    step = train_step(san, torch, TRAIN_SIZES, args.train_batch, args.device,
                      per_size, precision, graphed)

    def run():
        san.batch_kernel_generation = batched
        step()
    return run


def bench_train(args):
    """SAN's step over the five sizes vs the sum of the five plain steps."""
    suffix = ''
    if args.train_cuda_graph:
        if not args.device.startswith('cuda') or args.train_compile:
            raise SystemExit(
                '--train-cuda-graph captures the steps on a CUDA device, '
                f'without --train-compile; got --device {args.device}'
                + (' --train-compile' if args.train_compile else ''))
        suffix = ' cuda graph'
    if args.train_compile:
        from san_mm.engine.compile import (allow_graphs, compile_backbone,
                                           graphs_for_sizes)
        allow_graphs(graphs_for_sizes(len(TRAIN_SIZES)))
        suffix = ' compiled' + (f' {args.compile_mode}'
                                if args.compile_mode else '')
    rows = []
    for arch in args.archs:
        san, torch = build(arch, True, args.device)
        plain, _ = build(arch, False, args.device)
        san.train()
        plain.train()
        if args.train_compile:
            for model in (san, plain):
                compile_backbone(model, dict(dynamic=False,
                                             mode=args.compile_mode))
        memory = train_memory(arch, args) if args.train_memory else None
        for precision in args.precisions:
            rows += train_rows(arch, san, plain, torch, precision, memory,
                               suffix, args)
    return rows


def train_rows(arch, san, plain, torch, precision, memory, suffix, args):
    """Each SAN step against the five plain steps (with its peak memory in
    fp32), then the two joint steps against each other in the same rounds."""
    plain_sum = plain_steps(plain, torch, args, precision,
                            args.train_cuda_graph)
    san_runs, rows = {}, []
    for mode, per_size, batched in SAN_STEPS:
        if per_size and args.train_cuda_graph and precision != 'fp32':
            print(f'  ({mode} {precision} not captured: an AMP graph holds '
                  'one forward and backward)', flush=True)
            continue
        san_runs[mode] = san_step(san, torch, args, per_size, batched,
                                  precision, args.train_cuda_graph)
        # compiled: the first call compiles, reduce-overhead records its
        # CUDA graphs on the second and replays from the third
        row = compare(
            f'train step {arch} K={len(TRAIN_SIZES)} b={args.train_batch} '
            f'{precision}{suffix} {mode}', san_runs[mode], plain_sum, args,
            max(2, args.repeats // 2), warmup=3 if args.train_compile else 1)
        row['precision'] = precision
        if memory is not None and precision == 'fp32' and not batched:
            label = 'san_per_size' if per_size else 'san'
            row['memory'] = dict(san=memory[label], plain=memory['plain'],
                                 ratio=memory[label] / memory['plain'],
                                 per_step=memory)
            print(f'  peak memory SAN ({mode}) {memory[label] / 2**20:.0f} '
                  f'MiB, largest plain step {memory["plain"] / 2**20:.0f} '
                  f'MiB, ratio {row["memory"]["ratio"]:.3f}', flush=True)
        rows.append(row)
    rows.append(compare(
        f'  batched vs per-size kernels, joint backward {arch} '
        f'b={args.train_batch} {precision}{suffix}',
        san_runs['joint backward, batched kernels'],
        san_runs['joint backward'], args, warmup=1))
    return rows


def train_memory(arch, args):
    """Peak memory of one training step, each in a fresh process: on CUDA
    the peak allocated bytes; on CPU (no allocator statistics) the peak
    bytes of the activations held for backward."""
    peaks = {}
    for label, san, sizes, per_size in [
            ('san', True, TRAIN_SIZES, False),
            ('san_per_size', True, TRAIN_SIZES, True)] + [
            (f'plain@{s}', False, [s], False) for s in TRAIN_SIZES]:
        out = subprocess.run(
            [sys.executable, __file__, '--memory-probe', arch, str(int(san)),
             ','.join(map(str, sizes)), str(args.train_batch), args.device,
             str(int(per_size))],
            capture_output=True, text=True, check=True)
        peaks[label] = json.loads(out.stdout.strip().splitlines()[-1])['peak']
    peaks['plain'] = max(v for k, v in peaks.items() if k.startswith('plain@'))
    return peaks


class SavedActivations:
    """Live bytes of the tensors autograd holds for backward, and their
    peak (saved-tensor hooks: a storage is alive from the first forward
    that saves it until the last reference is released by backward)."""

    def __init__(self):
        self.refs, self.live, self.peak = {}, 0, 0

    def pack(self, tensor):
        return _Held(self, tensor)

    def add(self, storage):
        key = storage.data_ptr()
        count, nbytes = self.refs.get(key, (0, storage.nbytes()))
        if count == 0:
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self.refs[key] = (count + 1, nbytes)

    def remove(self, key):
        count, nbytes = self.refs[key]
        if count == 1:
            del self.refs[key]
            self.live -= nbytes
        else:
            self.refs[key] = (count - 1, nbytes)


class _Held:
    def __init__(self, tracker, tensor):
        self.tracker, self.tensor = tracker, tensor
        storage = tensor.untyped_storage()
        self.key = storage.data_ptr()
        tracker.add(storage)

    def __del__(self):
        self.tracker.remove(self.key)


def memory_probe(arch, san, sizes, batch, device, per_size='0'):
    """Print the peak memory of one step (after a warm-up step) as JSON."""
    model, torch = build(arch, bool(int(san)), device)
    model.train()
    step = train_step(model, torch, [int(s) for s in sizes.split(',')],
                      int(batch), device, per_size=bool(int(per_size)))
    step()  # warm up (optimizer state, caches)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        tracker = SavedActivations()
        with torch.autograd.graph.saved_tensors_hooks(
                tracker.pack, lambda held: held.tensor):
            step()
        peak = tracker.peak
    print(json.dumps(dict(peak=peak)))


def bench_pipeline(args):
    """The input pipeline's cost per image, one process (as one data
    worker): SAN's ResolutionSample (one crop resized to every training size,
    a flip each) against the plain pipeline at one size (RandomResizedCrop +
    flip), on ImageNet-like JPEGs (decoding included) at 224...96 and on
    Fashion-MNIST's 28 x 28 arrays at 28...12. The K baselines each read the
    data through their own plain pipeline: SAN's pipeline against K of them
    is ``ratio / K``."""
    import tempfile

    import cv2
    import numpy as np
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope

    import san_mm  # noqa: F401
    init_default_scope('mmpretrain')
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix='san_pipeline_') as folder:
        jpegs = []
        for i in range(args.pipeline_images):
            # ImageNet-like JPEGs: smooth content, 375 x 500
            small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            jpegs.append(os.path.join(folder, f'{i}.jpg'))
            cv2.imwrite(jpegs[-1], cv2.resize(small, (500, 375)))
        arrays = [rng.integers(0, 255, (28, 28), dtype=np.uint8)
                  for _ in range(args.pipeline_images)]
        cases = (
            ('ImageNet-like JPEG 375x500', TRAIN_SIZES,
             [dict(type='LoadImageFromFile')],
             [dict(img_path=p, gt_label=0) for p in jpegs]),
            ('Fashion-MNIST 28x28', [28, 24, 20, 16, 12], [],
             [dict(img=a, gt_label=0) for a in arrays]))
        for name, sizes, load, samples in cases:
            san = Compose(load + [dict(type='ResolutionSample', sizes=sizes),
                                  dict(type='PackInputs')])
            plain = Compose(load + [
                dict(type='RandomResizedCrop', scale=sizes[0]),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='PackInputs')])

            def run(pipeline):
                return lambda: [pipeline(dict(sample)) for sample in samples]

            row = compare(f'pipeline {name}, {len(samples)} images (time; '
                          'lower is better)', run(san), run(plain), args)
            row.update(case=name, sizes=sizes, ms_per_image=dict(
                san=row['san']['median'] / len(samples) * 1e3,
                plain=row['plain']['median'] / len(samples) * 1e3),
                against_k_plain=row['ratio'] / len(sizes))
            print(f'  ms per image SAN {row["ms_per_image"]["san"]:.3f}, '
                  f'plain {row["ms_per_image"]["plain"]:.3f}: '
                  f'{row["ratio"]:.2f}x one plain pipeline, '
                  f'{row["against_k_plain"]:.2f}x {len(sizes)}', flush=True)
            rows.append(row)
    return rows


def summarise_processes(processes):
    """Per row name (in first-process order): its ratio in every process
    and their median."""
    ratios = {}
    for rows in processes:
        for row in rows:
            ratios.setdefault(row['name'], []).append(row['ratio'])
    return [dict(name=name, ratios=values,
                 median_ratio=statistics.median(values))
            for name, values in ratios.items()]


def run_processes(args):
    """Run this script ``args.processes`` times, one fresh process after
    another, with the same arguments; write (``--out``) every process's
    rows and the summary after each process ("complete": false until the
    last), and print each row's ratios and their median."""
    import tempfile
    processes, machine = [], None
    command = command_line()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            out = os.path.join(tmp, f'process{i}.json')
            print(f'--- process {i + 1} of {args.processes}', flush=True)
            # the last --processes / --out win (argparse)
            subprocess.run([sys.executable, __file__, *sys.argv[1:],
                            '--processes', '1', '--out', out], check=True)
            with open(out) as f:
                result = json.load(f)
            machine = result['machine']
            processes.append(result['rows'])
            if args.out:
                with open(args.out, 'w') as f:
                    json.dump(dict(machine=machine, command=command,
                                   complete=len(processes) == args.processes,
                                   summary=summarise_processes(processes),
                                   processes=processes), f, indent=1)
    print('--- ratio per process, median over processes')
    for row in summarise_processes(processes):
        ratios = ' / '.join(f'{r:.3f}' for r in row['ratios'])
        print(f'{row["name"]:60s} {ratios}  median {row["median_ratio"]:.3f}')


def command_line():
    return 'python benchmarks/speed.py ' + ' '.join(sys.argv[1:])


def machine_record(args):
    """san_mm.analysis.timing's machine description, plus what else moves
    these timings: glibc's allocator settings (MALLOC_*), dynamo's
    dict-tag guards."""
    from san_mm.analysis.timing import machine_info
    machine = machine_info(args.device)
    machine.update((name, value) for name, value in sorted(os.environ.items())
                   if name.startswith('MALLOC_'))
    if args.dict_tag_guards:
        machine['dynamo'] = 'use_recursive_dict_tags_for_guards=True'
    return machine


def use_dict_tag_guards():
    """Turn on dynamo's recursive dict-tag guards for this process."""
    import torch
    if not hasattr(torch._dynamo.config, 'use_recursive_dict_tags_for_guards'):
        raise SystemExit(
            f'--dict-tag-guards: torch {torch.__version__} has no '
            'torch._dynamo.config.use_recursive_dict_tags_for_guards; drop '
            'the flag')
    torch._dynamo.config.use_recursive_dict_tags_for_guards = True


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+',
                        default=['inference', 'train', 'pipeline'],
                        choices=['inference', 'compiled', 'cudagraph',
                                 'train', 'pipeline'])
    parser.add_argument('--archs', nargs='+', default=list(ARCHS),
                        choices=list(ARCHS))
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 160, 96])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--repeats', type=int, default=5,
                        help='rounds per comparison')
    parser.add_argument('--min-run-time', type=float, default=0.5,
                        help='seconds of calls per measurement')
    parser.add_argument('--control', action='store_true',
                        help='inference, compiled and cudagraph rows: also '
                        'the plain model against a copy of itself, in the '
                        'same rounds (A/A control)')
    parser.add_argument('--processes', type=int, default=1,
                        help='run everything in this many fresh processes, '
                        'one after another; each row gets its median ratio '
                        'over them')
    parser.add_argument('--freeze', nargs='?', const='both', default='none',
                        choices=['none', 'both', 'only'],
                        help='compiled rows also (--freeze) or only '
                        "(--freeze only) with inductor's freezing")
    parser.add_argument('--guard-eval', default='full',
                        choices=['full', 'skip', 'both'],
                        help="compiled rows: dynamo's guards evaluated on "
                        'every call (full), skipped once every shape is '
                        "compiled (skip: set_stance's skip_guard_eval_unsafe),"
                        ' or both, one after the other in each process')
    parser.add_argument('--compile-mode', default=None,
                        choices=['default', 'reduce-overhead',
                                 'max-autotune', 'max-autotune-no-cudagraphs'],
                        help="compiled and --train-compile rows: "
                        "torch.compile's mode (reduce-overhead: CUDA graphs)")
    parser.add_argument('--dict-tag-guards', action='store_true',
                        help="compiled rows with dynamo's recursive dict-tag "
                        'guards (torch._dynamo.config.'
                        'use_recursive_dict_tags_for_guards)')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--precisions', nargs='+', default=['fp32'],
                        choices=list(PRECISIONS),
                        help="train rows: fp32, fp16 / bf16 (mmengine's "
                        'AmpOptimWrapper; CUDA)')
    parser.add_argument('--train-compile', action='store_true',
                        help='train rows with both backbones compiled as the '
                        "SAN loops compile them for the runner's compile "
                        'option (with --compile-mode)')
    parser.add_argument('--train-cuda-graph', action='store_true',
                        help='train rows with every step replayed from its '
                        'own CUDA graph (CUDA)')
    parser.add_argument('--no-train-memory', dest='train_memory',
                        action='store_false',
                        help='train rows without the peak-memory probes '
                        '(7 fresh processes per architecture)')
    parser.add_argument('--pipeline-images', type=int, default=64)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='write the rows as JSON')
    return parser.parse_args()


BENCHES = dict(inference=bench_inference, compiled=bench_compiled,
               cudagraph=bench_cudagraph, train=bench_train,
               pipeline=bench_pipeline)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--memory-probe':
        return memory_probe(*sys.argv[2:])
    args = parse_args()
    if args.processes > 1:
        return run_processes(args)
    from san_mm.analysis.timing import describe_machine
    if args.dict_tag_guards:
        use_dict_tag_guards()
    machine = machine_record(args)
    print(f'machine: {describe_machine(machine)}; repeats {args.repeats}')
    _RESULTS.update(path=args.out, machine=machine, command=command_line(),
                    rows=[])
    for name, bench in BENCHES.items():
        if name in args.only:
            bench(args)
    _save_results(complete=True)


if __name__ == '__main__':
    main()
