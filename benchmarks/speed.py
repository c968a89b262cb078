"""Speed and memory of SAN against plain mmpretrain models, side by side in one run.

    python benchmarks/speed.py                       # eager: about 10 min on 2 CPU cores
    python benchmarks/speed.py --only inference --archs resnet18 --sizes 224 --batches 1
    python benchmarks/speed.py --only compiled       # torch.compile rows (compiling takes minutes)
    python benchmarks/speed.py --only dynamo --sizes 96 --repeats 7   # dynamo's per-call cost
    python benchmarks/speed.py --only instructions --archs resnet18 --sizes 96 --batches 1  # valgrind
    python benchmarks/speed.py --device cuda         # on a GPU (benchmarks/cuda_rows.sh: every CUDA row)
    python benchmarks/speed.py --device cuda --only cudagraph --batches 1
    python benchmarks/speed.py --device cuda --only train --precisions fp32 fp16 bf16 --no-train-memory

Each comparison alternates the SAN model and the plain model for --repeats rounds (each round
starts one model later); a round times each with torch.utils.benchmark (Timer.blocked_autorange:
enough calls to fill --min-run-time, CUDA synchronised, the process's thread count), and the rows
print min / median / max of the rounds' medians and the ratio of medians (SAN / plain); --control
adds, to each inference, compiled, aoti and cudagraph row, the plain model against a copy of
itself, timed in the same rounds (the ratio this machine gives two identical models: read SAN's
ratios against it). To resolve a 2 % gap at batch 1 on a busy 2-core machine, many short rounds beat a few long
ones: --repeats 30 --min-run-time 0.05. --out is rewritten after every row ("complete": false
until the run ends), so a run stopped by a timeout keeps what it measured.
  inference   eval forward at size r with cached kernels vs mmpretrain's ResNet / MobileNetV2
              with the same weights (SAN initialised from the plain model: equal logits, checked);
              also SAN regenerating every kernel on every forward (the reference's behaviour) vs
              cached
  compiled    the same, both models through torch.compile(dynamic=False) (one static graph per
              size; SAN computes B + s * A inside its graph); with --freeze also (--freeze only:
              only) inductor's freezing (weights folded into the graph as constants: deployment,
              where weights no longer change); --compile-mode reduce-overhead adds CUDA graphs;
              --guard-eval skip / both: also with dynamo's per-call guards cut to those that
              tell the cached graphs apart (torch.compiler.set_stance(skip_guard_eval_unsafe=
              True), after every shape is compiled: serving a model that no longer changes);
              --compile-order alternate: SAN compiles first in every other process of
              --processes, the plain model in the rest (the summary gives both medians);
              --san-without-guards GROUP: SAN compiled without that group of its guards
              (a diagnosis: what the group costs per call)
  aoti        the same through torch.export + AOTInductor (no dynamo, so no guards per call;
              weights folded once when the package loads): the deployment path at batch 1
  cudagraph   (CUDA) the eager forwards captured in a CUDA graph and replayed: one launch per
              forward, no Python per layer; replayed logits checked against eager
  dynamo      what torch.compile adds around the graph per call (guards, input prologue),
              both compiled with a backend whose graph returns precomputed outputs; warm
              (back to back) and cold (--evict-mib of memory written before each call, as a
              real forward's convolutions do); batch 1; --guard-attribution: also SAN without
              each of its own guard groups, to see what each costs per call
  placement   the batch-1 convolutions alone, with SAN's cached kernels, with the plain model's
              weights and with fresh clones of those weights (equal values; only where the tensor
              was allocated differs): whether a gap in the inference rows is SAN's or the
              allocator's (glibc puts tensors allocated at build time and later ones in different
              memory; MALLOC_MMAP_THRESHOLD_ fixes that, and is reported with the machine)
  train       one SAN step over K sizes (forward, backward, SGD) vs the sum of K plain steps (one
              per size), same batch, with the joint backward and with SANClassifier's per-size
              backward, in each of --precisions (fp16 / bf16: mmengine's AmpOptimWrapper); peak
              memory (CUDA: peak allocated; CPU: peak of the activations held for backward) of
              each SAN step vs the largest plain step, unless --no-train-memory; with
              --train-compile both backbones compiled (--compile-mode reduce-overhead: CUDA graphs);
              with --train-cuda-graph every step replayed from its CUDA graph (CUDA; fp32: the
              whole step; AMP: forward and scaled backward, the loss scaler's step eager, no
              per-size row)
  ops         the operators (views excluded) one SAN training step dispatches vs the five plain
              steps, counted: where a GPU step waits on the host, each is a launch (train and
              ops rows: the joint backward with and without batch_kernel_generation, and the
              per-size backward)
  codegen     not timed: whether inductor compiles SAN and the plain model (same weights, each
              --sizes x --batches, --freeze variants) to the same program — the wrapper that
              calls every kernel, in order, with its buffers and strides, names normalised;
              where it is the same, a gap in the compiled rows is not SAN's convolutions
  instructions  not timed: CPU instructions per eval forward (cached kernels) of SAN, plain, the
              A/A control and SAN regenerating every kernel, counted by valgrind's callgrind (one
              thread, --instruction-forwards forwards per count, --repeats rounds) in a child
              process per architecture; --instruction-kinds compiled+frozen: also the three compiled with inductor
              freezing (dynamo's guards included; --dict-tag-guards applies). The same on every
              run, so where a noisy machine cannot time a 2 % gap it still says whether SAN does
              more work per forward, and in which functions; blind to where memory lies
              (placement). Counted code runs ~50x slower under valgrind: ResNet-18 at one size,
              eager, takes ~10 min
  pipeline    images/s of LoadImageFromFile + ResolutionSample (one crop -> K sizes) vs
              mmpretrain's single-size LoadImageFromFile + RandomResizedCrop + RandomFlip, same JPEGs
"""
import argparse
import copy
import json
import os
import re
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


def build(arch, san, device):
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


def forward_of(model, x):
    """A call that runs ``model`` on ``x`` without autograd, to be timed."""
    return without_grad(lambda: model(x, mode='tensor'))


def without_grad(call):
    """``call`` (no arguments) wrapped to run without autograd."""
    import torch

    def run():
        with torch.no_grad():
            call()
    return run


def measure(fn, min_run_time):
    """Median seconds per call of ``fn``: san_mm's one timing harness."""
    from san_mm.analysis.timing import median_seconds
    return median_seconds(fn, min_run_time)


def compare(name, san_fn, plain_fn, args, repeats=None, warmup=2):
    """Alternate SAN and plain measurements; report min/median/max of the
    rounds' medians and the ratio of their medians."""
    san_times, plain_times = interleaved_times(
        [san_fn, plain_fn], args, repeats, warmup)
    return _row(name, san_times, plain_times)


def compare_with_control(name, san_fn, plain_fn, copy_fn, control_name,
                         args):
    """SAN vs plain and the A/A control (a deep copy of the plain model vs
    plain) timed in the same rounds, so that the control sees the same
    machine as the SAN row it is read against (timed one after the other,
    the two rows drifted apart by more than the gaps they measure here).
    Without a control (``copy_fn`` None), the SAN row alone."""
    if copy_fn is None:
        return [compare(name, san_fn, plain_fn, args)]
    san_times, plain_times, copy_times = interleaved_times(
        [san_fn, plain_fn, copy_fn], args)
    return [_row(name, san_times, plain_times),
            _row(control_name, copy_times, plain_times)]


def interleaved_times(fns, args, repeats=None, warmup=2):
    """Per-round median seconds of each of ``fns``: every round times each
    once (Timer.blocked_autorange), starting one later in the list each
    round, so neither drift nor the order within a round favours one."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for round_index in range(repeats or args.repeats):
        for i in rotation(len(fns), round_index):
            times[i].append(measure(fns[i], args.min_run_time))
    return times


def rotation(count, round_index):
    """Indices 0..count-1 starting at ``round_index`` (mod count): the order
    of a round, one later each round, so that neither drift nor the position
    within a round favours one of the compared calls."""
    return [(round_index + offset) % count for offset in range(count)]


# --out as the run goes: every row is written when it is measured, so a run
# stopped by a timeout or a kill keeps what it measured ("complete": false)
_RESULTS = dict(path=None, machine=None, rows=[])


def _save_results(complete):
    if _RESULTS['path']:
        with open(_RESULTS['path'], 'w') as f:
            json.dump(dict(machine=_RESULTS['machine'], complete=complete,
                           rows=_RESULTS['rows']), f, indent=1)


def _row(name, san_times, plain_times):
    ratio = statistics.median(san_times) / statistics.median(plain_times)
    row = dict(name=name, san=_stats(san_times), plain=_stats(plain_times),
               ratio=ratio)
    print(f'{name:46s} SAN {_fmt(row["san"])}  plain {_fmt(row["plain"])}  '
          f'ratio {ratio:.3f}', flush=True)
    return _record(row)


def _record(row):
    """Keep ``row`` and rewrite --out with it."""
    _RESULTS['rows'].append(row)
    _save_results(complete=False)
    return row


def _stats(times):
    return dict(min=min(times), median=statistics.median(times),
                max=max(times))


def _fmt(s):
    digits = 3 if s['median'] < 1e-3 else 1  # dynamo rows are microseconds
    return (f'{s["min"] * 1e3:8.{digits}f}/{s["median"] * 1e3:8.{digits}f}/'
            f'{s["max"] * 1e3:8.{digits}f} ms')


def san_and_plain(arch, device):
    """A SAN model and the plain mmpretrain model, in eval, with the same
    weights (B = the plain kernel, A = 0, the plain BN in every set): both
    compute the same activations, so their time ratio is the cost of being
    adaptive alone. Two random inits would differ in activation magnitudes
    (and in how often the CPU falls into slow denormal arithmetic), which is
    not what is measured here."""
    from san_mm.models.utils.plain_init import load_plain_into_san
    san, torch = build(arch, True, device)
    plain, _ = build(arch, False, device)
    load_plain_into_san(san, plain.state_dict())
    return san.eval(), plain.eval(), torch


def bench_inference(args):
    rows = []
    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        plain_copy = copy.deepcopy(plain) if args.control else None
        for size in args.sizes:
            for batch in args.batches:
                x = plain_weight_input(san, plain, size, batch, args.device)
                run_san, run_plain = forward_of(san, x), forward_of(plain, x)
                rows += compare_with_control(
                    f'inference {arch} r={size} b={batch}', run_san,
                    run_plain,
                    forward_of(plain_copy, x) if args.control else None,
                    f'  control: plain copy vs plain {arch} r={size} '
                    f'b={batch}', args)
                rows.append(compare(
                    f'  regenerate-every-forward vs cached {arch} r={size} '
                    f'b={batch}', regenerating(san, run_san), run_san, args))
    return rows


def plain_weight_input(san, plain, size, batch, device):
    """A random batch at ``size`` on which SAN, carrying the plain model's
    weights (san_and_plain), computes the plain model's logits (checked)."""
    import torch
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad():
        gap = (san(x, mode='tensor') -
               plain(x, mode='tensor')).abs().max().item()
    if gap > 1e-3:
        raise AssertionError(f'SAN with the plain weights differs from the '
                             f'plain model by {gap}')
    return x


def regenerating(san, run_san):
    """``run_san`` with every generated kernel regenerated first, as the
    reference implementation does on every forward."""
    def run():
        for conv in san.backbone.meta_convs():
            conv.clear_kernel_cache()
        run_san()
    return run


def bench_compiled(args):
    """Compiled SAN vs compiled plain model, same weights, one static graph
    per size (dynamic=False); with --freeze, inductor's freezing too. With
    --compile-part backbone, only the backbones are compiled and timed (the
    head and neck are the same modules in both models). With --guard-eval
    skip (or both), also timed the way a server runs a model that no longer
    changes: only the guards that tell its compiled graphs apart."""
    from san_mm.engine.compile import allow_graphs
    rows = []
    allow_graphs(6 * len(args.sizes) * len(args.batches))
    variants = freeze_variants(args)
    guard_modes = dict(full=[False], both=[False, True],
                       skip=[True])[args.guard_eval]

    def run_part(compiled, x):
        return run_compiled_part(compiled, x, args)

    def timed(compiled, x, skip_guards=False):
        call = without_grad(lambda: run_part(compiled, x))
        if not skip_guards:
            return call
        # torch's steady-state serving setting: once every shape has been
        # compiled (and the copy has: its first calls compile it here, with
        # guards), run only the guards that tell the cached graphs apart
        # (here the input shape), not the thousands on module attributes
        call()

        def steady_state():
            with torch.compiler.set_stance('default',
                                           skip_guard_eval_unsafe=True):
                call()
        return steady_state

    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        plain_copy = copy.deepcopy(plain) if args.control else None
        for freeze in variants:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = freeze
            torch._dynamo.reset()
            options = dict(dynamic=False, mode=args.compile_mode)
            compiled_san = compile_part(
                san, args, **options,
                **without_guards(args.san_without_guards))
            compiled_plain = compile_part(plain, args, **options)
            compiled_copy = (compile_part(plain_copy, args, **options)
                             if args.control else None)
            label = ('compiled+frozen' if freeze else 'compiled') + (
                COMPILE_PART_LABELS[args.compile_part]) + (
                    f' {args.compile_mode}' if args.compile_mode else '') + (
                        f', SAN without {SAN_GUARD_GROUPS[args.san_without_guards][0]}'
                        ' guards' if args.san_without_guards else '')
            for size in args.sizes:
                for batch in args.batches:
                    x = torch.rand(batch, 3, size, size, device=args.device)
                    compile_s = {}
                    with torch.no_grad():
                        # the first call compiles (and, frozen, allocates
                        # the folded weights): in the order asked for
                        for name in compile_order(args):
                            start = time.perf_counter()
                            run_part(dict(san=compiled_san,
                                          plain=compiled_plain)[name], x)
                            compile_s[name] = time.perf_counter() - start
                        # later calls are the ones timed (reduce-overhead
                        # records its CUDA graph on the second and replays
                        # from the third); clones, since a replay rewrites
                        # its outputs
                        for _ in range(2):
                            got = run_part(compiled_san, x).clone()
                            expected = run_part(compiled_plain, x).clone()
                    check_same_logits(got, expected, 'compiled SAN',
                                      'the compiled plain model')

                    # (the copy compiles in the untimed warm-up calls)
                    for skip in guard_modes:
                        name = label + (' skip-guard-eval' if skip else '')
                        found = compare_with_control(
                            f'{name} {arch} r={size} b={batch}',
                            timed(compiled_san, x, skip),
                            timed(compiled_plain, x, skip),
                            (timed(compiled_copy, x, skip)
                             if args.control else None),
                            f'  control: plain copy vs plain, {name} {arch} '
                            f'r={size} b={batch}', args)
                        found[0]['compile_seconds'] = compile_s
                        found[0]['compile_order'] = list(compile_order(args))
                        rows += found
            inductor_config.freezing = False
    return rows


# what each --compile-part adds to a row's name
COMPILE_PART_LABELS = {'model': '', 'backbone': ' backbone',
                       'backbone-method': ' backbone .compile()'}


def compile_part(model, args, **options):
    """The part of ``model`` that --compile-part names, compiled with
    ``torch.compile(**options)``: the whole classifier (``model``), its
    backbone (``backbone``), or its backbone through the module's own
    ``.compile()`` (``backbone-method``, as the SAN loops' compile option
    does: a SAN backbone then refreshes its kernel caches eagerly before each
    eval call and its graph reads them, BaseScaleAdaptiveBackbone.compile),
    which compiles the module in place and returns it."""
    import torch
    if args.compile_part == 'model':
        return torch.compile(model, **options)
    if args.compile_part == 'backbone':
        return torch.compile(model.backbone, **options)
    model.backbone.compile(**options)
    return model.backbone


def run_compiled_part(compiled, x, args):
    """Call what :func:`compile_part` returned on ``x``: the classifier's
    logits, or the backbone's last output."""
    if args.compile_part == 'model':
        return compiled(x, mode='tensor')
    return compiled(x)[-1]


def freeze_variants(args):
    """Inductor freezing off, on, or both in turn (--freeze)."""
    return dict(none=[False], both=[False, True], only=[True])[args.freeze]


def compile_order(args):
    """Which model's graphs are compiled first: ``('san', 'plain')`` or the
    reverse (``--compile-order``; ``alternate`` is resolved per process by
    :func:`run_processes`, san first in a single process)."""
    if args.compile_order == 'plain-first':
        return ('plain', 'san')
    return ('san', 'plain')


def generated_program(call):
    """Inductor's wrapper for the graph ``call()`` compiles and runs first
    (static shapes): the body of its ``call`` function, which runs every
    kernel in order, with the names that differ between two models of the
    same program normalised (graph inputs, frozen constants, comments,
    pattern-match notes that name source nodes, addresses).

    Returns:
        list[str]: The normalised lines.
    """
    from torch._inductor.utils import run_and_get_code
    _, codes = run_and_get_code(call)
    lines = []
    for code in codes:
        # up to the first line that is not indented: the end of the class
        # or function that holds it
        body = re.search(r'\n *def call\(.*?(?=\n\S|\Z)', code, re.S)
        if body is None:
            raise RuntimeError(
                "inductor's generated code has no `def call(` (the wrapper "
                'that runs the kernels) in this torch version; its first '
                f'lines: {code[:300]!r}')
        for line in body.group(0).splitlines():
            line = re.sub(r'arg\d+_1', 'ARG', line)
            line = re.sub(r'_frozen_param\d+', 'CONSTANT', line)
            line = re.sub(r'"torch\._inductor\.fx_passes[^"]*"', 'NOTE', line)
            line = re.sub(r'0x[0-9a-f]+', 'ADDRESS', line)
            if line.strip() and not line.strip().startswith('#'):
                lines.append(line)
    return lines


def kernel_calls(program):
    """Lines of a :func:`generated_program` that run a kernel (inductor's
    own, an extern one, or an aten / mkldnn op)."""
    return sum(1 for line in program if re.search(
        r'\b(cpp_fused_\w+|triton_\w+|extern_kernels\.\w+|'
        r'torch\.ops\.\w+\.\w+(\.\w+)?)\(', line))  # op, overload


def bench_codegen(args):
    """Whether SAN and the plain model (same weights) compile to the same
    program at each size and batch (not timed), compiled as --compile-part
    says: the whole models through ``torch.compile``, the backbones alone
    (``backbone``), or the backbones through their own ``.compile()``
    (``backbone-method``: SAN's graph then reads its refreshed kernel
    caches)."""
    import difflib

    import torch._inductor.config as inductor_config

    def compiled_call(model, x):
        compiled = compile_part(model, args, dynamic=False)
        return lambda: run_compiled_part(compiled, x, args)

    rows = []
    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        for freeze in freeze_variants(args):
            kind = ('compiled+frozen' if freeze else 'compiled') + (
                COMPILE_PART_LABELS[args.compile_part])
            for size in args.sizes:
                for batch in args.batches:
                    x = torch.rand(batch, 3, size, size, device=args.device)
                    programs = {}
                    for name, model in (('san', san), ('plain', plain)):
                        torch._dynamo.reset()
                        # patched, not set: later rows and benches run
                        # unfrozen unless they ask
                        with inductor_config.patch(freezing=freeze):
                            programs[name] = generated_program(without_grad(
                                compiled_call(model, x)))
                    differing = [line for line in difflib.unified_diff(
                        programs['san'], programs['plain'], lineterm='', n=0)
                        if line[:1] in '+-' and line[:3] not in ('+++', '---')]
                    row = dict(name=f'codegen {kind} {arch} r={size} b={batch}',
                               same_program=not differing,
                               san_kernel_calls=kernel_calls(programs['san']),
                               plain_kernel_calls=kernel_calls(
                                   programs['plain']),
                               differing_lines=len(differing))
                    print(f'{row["name"]:46s} same program: '
                          f'{row["same_program"]} (SAN {row["san_kernel_calls"]}'
                          f' kernel calls, plain {row["plain_kernel_calls"]}; '
                          f'{len(differing)} lines differ)', flush=True)
                    rows.append(_record(row))
    return rows


def check_same_logits(got, expected, what, reference):
    """Raise unless ``got`` equals ``expected`` up to float32 rounding of
    reordered sums (1e-4 of the logits' scale): compiled programs fuse and
    reorder, so a timed pair must still compute the same function. On CUDA
    with TF32 convolutions (PyTorch's default for cuDNN), 1e-2: TF32 keeps
    10 mantissa bits, and a compiled graph may pick other conv algorithms
    and layouts than eager."""
    import torch
    tolerance = 1e-2 if (expected.is_cuda and
                         torch.backends.cudnn.allow_tf32) else 1e-4
    gap = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    if gap > tolerance * max(scale, 1.0):
        raise AssertionError(f'{what} differs from {reference} by {gap} '
                             f'(logits up to {scale})')


def aoti_package(model, x, path):
    """``model`` (eval) through ``torch.export`` at ``x``'s shape and
    AOTInductor, loaded back: a compiled program with no dynamo guards per
    call. Parameters are folded once when the package loads
    (``use_runtime_constant_folding``): SAN's ``B + s * A`` and the BNs,
    like the plain model's BNs."""
    import torch
    import torch._inductor.config as inductor_config
    with torch.no_grad():
        program = torch.export.export(model, (x, ))
    with inductor_config.patch(
            {'aot_inductor.use_runtime_constant_folding': True}):
        torch._inductor.aoti_compile_and_package(program, package_path=path)
    return torch._inductor.aoti_load_package(path)


def bench_aoti(args):
    """SAN vs plain through torch.export + AOTInductor at batch 1 (the
    deployment path without dynamo: nothing runs per call but the compiled
    program); with --control, a second package of the plain model too."""
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            san, plain, torch = san_and_plain(arch, args.device)
            for size in args.sizes:
                x = torch.rand(1, 3, size, size, device=args.device)
                models = dict(san=san, plain=plain)
                if args.control:  # a second package of the plain model
                    models['copy'] = plain
                packages, compile_s = {}, {}
                for name, model in models.items():
                    start = time.perf_counter()
                    packages[name] = aoti_package(
                        model, x, os.path.join(tmp, f'{arch}_{size}_{name}.pt2'))
                    compile_s[name] = time.perf_counter() - start
                with torch.no_grad():
                    expected = plain(x, mode='tensor')
                    for name, package in packages.items():
                        check_same_logits(package(x), expected,
                                          f'AOTInductor {name} {arch}',
                                          'the eager plain model')
                timed = {name: without_grad(lambda p=package: p(x))
                         for name, package in packages.items()}
                found = compare_with_control(
                    f'aoti {arch} r={size} b=1', timed['san'],
                    timed['plain'], timed.get('copy'),
                    f'  control: plain copy vs plain, aoti {arch} r={size} '
                    'b=1', args)
                found[0]['compile_seconds'] = compile_s  # as compiled rows
                rows += found
    return rows


def cuda_graph_of(fn, grad=False, warmup=None):
    """``fn`` (no arguments) captured in a CUDA graph: the replay, and the
    output (tensor) it rewrites on every replay. Warmed up on a side stream
    first (three calls of ``warmup``, default ``fn``), as capturing requires
    (SAN's eval forward fills its kernel cache there, so the captured
    forward reads the cached kernels: the graph replays exactly the eager
    forward's kernels). With ``grad`` ``fn`` is a whole training step
    (forward, backward, optimizer step, as PyTorch's whole-network capture
    recipe) or its forward and backward: the gradients are allocated by the
    graph (the warm-up leaves them None, as ``OptimWrapper.update_params``
    does)."""
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
    # alive; without it the next capture's empty_cache releases it and a
    # replay hits an illegal address (measured: H200, torch 2.11)
    replay.captured_fn = fn
    return replay, output


def bench_cudagraph(args):
    """SAN vs plain, eager forwards captured whole in a CUDA graph (no
    Python per call: one graph launch), outputs checked against eager; with
    --control, a graph of a deep copy of the plain model too."""
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
                rows += compare_with_control(
                    f'cuda graph {arch} r={size} b={batch}', replays['san'],
                    replays['plain'], replays.get('copy'),
                    f'  control: plain copy vs plain, cuda graph {arch} '
                    f'r={size} b={batch}', args)
    return rows


def conv_calls(san, plain, x):
    """Every generated conv of ``san`` as a call on the input it sees in
    ``plain`` at ``x``, three ways that differ only in the kernel tensor:
    ``'plain'`` (the plain model's weight), ``'san'`` (SAN's cached kernel,
    equal values) and ``'clone'`` (a clone of the plain weight allocated
    now). Returns ``{variant: [(conv_forward, input, kernel), ...]}``."""
    import torch

    from san_mm.models.utils import MetaConv2d
    inputs = {}
    plain_modules = dict(plain.named_modules())
    hooks = [module.register_forward_hook(
        lambda module, args, out, name=name: inputs.__setitem__(name, args[0]))
        for name, module in plain_modules.items()
        if isinstance(module, torch.nn.Conv2d)]
    with torch.no_grad():
        san(x, mode='tensor')  # fills the kernel caches (eval, no grad)
        plain(x, mode='tensor')
    for hook in hooks:
        hook.remove()
    calls = dict(plain=[], san=[], clone=[])
    for name, conv in san.named_modules():
        if not isinstance(conv, MetaConv2d):
            continue
        weight = plain_modules[name].weight.detach()
        kernel = conv.kernel_for(conv.scale_context.last_state.encoding)
        if not torch.equal(kernel, weight):
            raise AssertionError(f'{name}: SAN kernel differs from the plain '
                                 'weight (the comparison needs equal values)')
        for variant, tensor in (('plain', weight), ('san', kernel),
                                ('clone', weight.clone())):
            calls[variant].append((plain_modules[name]._conv_forward,
                                   inputs[name], tensor))
    return calls


def run_calls(calls):
    """A callable that runs ``calls`` (one variant of :func:`conv_calls`)
    without autograd."""
    return without_grad(lambda: [conv(x_in, kernel, None)
                                 for conv, x_in, kernel in calls])


def bench_placement(args):
    """Where a kernel tensor lies in memory, not SAN: the batch-1 convs of a
    SAN model timed with SAN's cached kernels, with the plain model's weights
    and with fresh clones of those weights (same values, same shapes; only
    the allocation differs). If the clone is as slow as SAN's kernel, the
    gap of the inference row is the allocation's, not SAN's."""
    rows = []
    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        for size in args.sizes:
            x = torch.rand(1, 3, size, size, device=args.device)
            calls = conv_calls(san, plain, x)
            rows += compare_with_control(
                f'{len(calls["san"])} convs, SAN kernels vs plain weights '
                f'{arch} r={size} b=1', run_calls(calls['san']),
                run_calls(calls['plain']), run_calls(calls['clone']),
                f'  clones of the plain weights vs plain weights {arch} '
                f'r={size} b=1', args)
    return rows


def on_the_set_path(name):
    """Whether the guard ``name`` is on how a private BN reaches its active
    set (the sets' container, the set's key and type, the set's hooks that
    the fast path reads): the second module level a plain BN does not have,
    not the set's own attributes and tensors, which a plain BN has too."""
    if '._set_keys' in name:
        return True
    _, found, rest = name.partition("._modules['sets']")
    return bool(found) and re.fullmatch(
        r"(\.__dict__|\._modules(\['\d+'\](\._forward(_pre)?_hooks)?)?)?",
        rest) is not None


# SAN's own guard groups, by the source a guard reads (dynamo's guard names):
# what each costs per call shows when SAN is compiled without it
# (--guard-attribution, --san-without-guards). Leaving guards out is unsafe
# (a changed tensor or setting would not recompile): a diagnosis only.
SAN_GUARD_GROUPS = {
    'sets': ("its private BNs' sets (path and tensors)",
             lambda name: "._modules['sets']" in name or '._set_keys' in name),
    'set-path': ("the path to its private BNs' sets (not the sets' own guards)",
                 on_the_set_path),
    'scale-context': ('scale_context on every layer',
                      lambda name: '.scale_context' in name),
    'residual': ('the residual kernels A',
                 lambda name: "['weight_residual']" in name),
}


def guard_filter(drop=None, counted=None):
    """A torch.compile ``guard_filter_fn`` keeping every guard whose name
    ``drop`` (name -> bool) does not match; ``counted`` (a dict), if given,
    receives how many guards there were and how many were kept."""
    def keep(entries):
        kept = [drop is None or not drop(entry.name) for entry in entries]
        if counted is not None:
            counted.update(guards=len(kept), kept=sum(kept))
        return kept
    return keep


def without_guards(group):
    """torch.compile options leaving SAN_GUARD_GROUPS[group]'s guards out
    (no options for None)."""
    if group is None:
        return {}
    return dict(options=dict(
        guard_filter_fn=guard_filter(SAN_GUARD_GROUPS[group][1])))


def outputs_only_call(model, x, torch, drop=None):
    """``model`` compiled (dynamic=False) with a backend whose graph returns
    the outputs it computed when compiled: calling it costs what dynamo
    adds around a graph and nothing else. ``drop`` (guard name -> bool)
    leaves those guards out (torch.compile's guard_filter_fn).

    Returns:
        tuple: (call without autograd, number of guards, number kept).
    """
    graphs, counted = [], {}

    def outputs_only(gm, inputs):
        outputs = gm(*inputs)
        graphs.append(gm)
        return lambda *_: outputs

    compiled = torch.compile(
        model, dynamic=False, backend=outputs_only,
        options=dict(guard_filter_fn=guard_filter(drop, counted)))
    with torch.no_grad():
        compiled(x, mode='tensor')
    if len(graphs) != 1:
        raise AssertionError(f'{type(model).__name__} compiled into '
                             f'{len(graphs)} graphs, expected 1')
    return forward_of(compiled, x), counted['guards'], counted['kept']


def bench_dynamo(args):
    """What torch.compile adds around the graph on every call (guards, the
    prologue that gathers the graph's inputs, SAN's scale-state update),
    SAN vs plain: both compiled with a backend whose graph returns its
    precomputed outputs, so the time is dynamo's alone. 'warm' repeats the
    call back to back; 'cold' first writes --evict-mib of memory, as the
    convolutions of a real forward do, so the guards read the modules from
    main memory. With --guard-attribution, also SAN compiled without each
    of its own guard groups (SAN_GUARD_GROUPS) against the plain model
    with all of its guards: what each group costs per call."""
    import torch._inductor.config as inductor_config
    rows = []
    groups = [('', None)]
    tags = ', dict-tag guards' if args.dict_tag_guards else ''
    if args.guard_attribution:
        groups += [(f', SAN without {what} guards', drop)
                   for what, drop in SAN_GUARD_GROUPS.values()]
    for arch in args.archs:
        san, plain, torch = san_and_plain(arch, args.device)
        for size in args.sizes:
            x = torch.rand(1, 3, size, size, device=args.device)
            for freeze in freeze_variants(args):
                for label, drop in groups:
                    # frozen (no grad), dynamo guards parameters by identity
                    # instead of by their tensor properties, as in deployment
                    with inductor_config.patch(freezing=freeze):
                        rows += dynamo_rows(
                            f'{", frozen" if freeze else ""}{tags}{label} '
                            f'{arch} r={size}', san, plain, x, drop, args)
    return rows


def dynamo_rows(what, san, plain, x, drop, args):
    """Warm and cold rows of dynamo's per-call work, SAN (without the guards
    ``drop`` matches) vs plain, each row with the guard counts."""
    import torch

    # one cache entry per frame: none left from another backend to be
    # checked first on every call
    torch._dynamo.reset()
    plain_call, plain_guards, _ = outputs_only_call(plain, x, torch)
    san_call, san_guards, kept = outputs_only_call(san, x, torch, drop)
    rows = []
    for kind, bench in (('warm', compare), ('cold', compare_cold)):
        row = bench(f'dynamo per call, {kind}{what}', san_call, plain_call,
                    args)
        row['guards'] = dict(san=san_guards, san_kept=kept,
                             plain=plain_guards)
        rows.append(row)
    return rows


def compare_cold(name, san_fn, plain_fn, args, calls=200):
    """Like compare, but memory (--evict-mib) is written before every call
    and only the call is timed: median over ``calls`` per round."""
    import torch
    evict = torch.empty(args.evict_mib * 2**20 // 4)

    def median_cold(fn):
        times = []
        for _ in range(calls):
            evict.add_(1.0)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    san_times, plain_times = [], []
    for _ in range(args.repeats):
        san_times.append(median_cold(san_fn))
        plain_times.append(median_cold(plain_fn))
    return _row(name, san_times, plain_times)


PRECISIONS = dict(fp32=None, fp16='float16', bf16='bfloat16')
# SAN's training steps: (label, per-size backward, batch_kernel_generation)
SAN_STEPS = [('joint backward', False, False),
             ('joint backward, batched kernels', False, True),
             ('per-size backward', True, False)]


def _train_step_fn(model, torch, sizes, batch, device, per_size=False,
                   precision='fp32', graphed=False):
    """One SGD step at ``sizes``: the joint loss and one backward, or (SAN,
    ``per_size``) SANClassifier.update_per_size (one backward per size).
    ``precision`` fp16 / bf16 runs it through mmengine's AmpOptimWrapper
    (autocast and a dynamic loss scale: what ``tools/train.py --amp`` uses),
    fp32 through the plain OptimWrapper. ``graphed``: replayed from a CUDA
    graph, the whole step in fp32; with AMP the forward and the scaled
    backward, and the loss scaler's step eagerly after each replay (it reads
    its overflow check on the host), as ``SANClassifier(cuda_graph_step=
    True)`` trains with ``--amp``."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmpretrain.structures import DataSample
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    if PRECISIONS[precision] is None:
        wrapper = OptimWrapper(optimizer)
    else:
        wrapper = AmpOptimWrapper(optimizer=optimizer,
                                  dtype=PRECISIONS[precision])
    inputs = [torch.rand(batch, 3, s, s, device=device) for s in sizes]
    samples = [DataSample().set_gt_label(i % 1000) for i in range(batch)]
    samples = [s.to(device) for s in samples]

    def loss():
        with wrapper.optim_context(model):
            losses = model.loss(inputs if len(inputs) > 1 else inputs[0],
                                samples)
        return sum(v for k, v in losses.items() if 'loss' in k)

    def step():
        if per_size:
            model.update_per_size(inputs, samples, wrapper)
            return
        wrapper.update_params(loss())

    if not graphed:
        return step
    if PRECISIONS[precision] is None:
        return cuda_graph_of(step, grad=True)[0]
    if per_size:
        raise ValueError('a graphed AMP step captures one forward and '
                         'backward; per_size steps are not captured')
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


def training_pair(arch, args):
    """A SAN model and the plain mmpretrain model, both in training mode."""
    san, torch = build(arch, True, args.device)
    plain, _ = build(arch, False, args.device)
    return san.train(), plain.train(), torch


def plain_steps(plain, torch, args, precision='fp32', graphed=False):
    """One call running the five plain single-size steps, one per size
    (``graphed``: each replayed from its own CUDA graph)."""
    steps = [_train_step_fn(plain, torch, [s], args.train_batch, args.device,
                            precision=precision, graphed=graphed)
             for s in TRAIN_SIZES]

    def run():
        for step in steps:
            step()
    return run


def san_step(san, torch, args, per_size, batched, precision='fp32',
             graphed=False):
    """One call running SAN's step over the five sizes, with its kernels
    batched (``batch_kernel_generation``) or not; ``graphed``: replayed
    from its CUDA graph (see ``_train_step_fn``)."""
    san.batch_kernel_generation = batched  # also what a capture records
    step = _train_step_fn(san, torch, TRAIN_SIZES, args.train_batch,
                          args.device, per_size, precision, graphed)

    def run():
        san.batch_kernel_generation = batched
        step()
    return run


def bench_train(args):
    """SAN's step over the five sizes vs the sum of five plain steps; with
    --train-compile both backbones compiled as the SAN loops compile them
    (``compile_backbone``: one static graph per size, --compile-mode)."""
    rows = []
    compiled = ''
    if args.train_cuda_graph:
        if not args.device.startswith('cuda') or args.train_compile:
            raise SystemExit(
                '--train-cuda-graph captures the steps on a CUDA device, '
                f'without --train-compile; got --device {args.device}'
                + (', --train-compile' if args.train_compile else ''))
        compiled = ' cuda graph'
    if args.train_compile:
        from san_mm.engine.compile import (allow_graphs, compile_backbone,
                                           graphs_for_sizes)
        allow_graphs(graphs_for_sizes(len(TRAIN_SIZES)))
        compiled = ' compiled' + (f' {args.compile_mode}'
                                  if args.compile_mode else '')
    for arch in args.archs:
        san, plain, torch = training_pair(arch, args)
        if args.train_compile:
            for model in (san, plain):
                compile_backbone(model, dict(dynamic=False,
                                             mode=args.compile_mode))
        memory = train_memory(arch, args) if args.train_memory else None
        for precision in args.precisions:
            plain_sum = plain_steps(plain, torch, args, precision,
                                    args.train_cuda_graph)
            san_runs = {}
            for mode, per_size, batched in SAN_STEPS:
                if per_size and args.train_cuda_graph and \
                        PRECISIONS[precision] is not None:
                    print(f'  ({mode} {precision} not captured: an AMP '
                          'graph holds one forward and backward)', flush=True)
                    continue
                run_san = san_step(san, torch, args, per_size, batched,
                                   precision, args.train_cuda_graph)
                san_runs[mode] = run_san
                # compiled: the first call compiles, reduce-overhead records
                # its CUDA graphs on the second and replays from the third
                row = compare(
                    f'train step {arch} K=5 b={args.train_batch} {precision}'
                    f'{compiled} {mode}', run_san, plain_sum, args,
                    max(2, args.repeats // 2),
                    warmup=3 if args.train_compile else 1)
                row['precision'] = precision
                if (memory is not None and precision == 'fp32'
                        and not batched):
                    label = 'san_per_size' if per_size else 'san'
                    row['memory'] = dict(
                        san=memory[label], plain=memory['plain'],
                        ratio=memory[label] / memory['plain'],
                        per_step=memory)
                    print(f'  peak memory SAN ({mode}) '
                          f'{memory[label] / 2**20:.0f} MiB, largest plain '
                          f'step {memory["plain"] / 2**20:.0f} MiB, ratio '
                          f'{row["memory"]["ratio"]:.3f}', flush=True)
                rows.append(row)
            # the two joint steps against each other, in the same rounds
            # (each against plain above sees the plain steps drift)
            rows.append(compare(
                f'  batched vs per-size kernels, joint backward {arch} '
                f'b={args.train_batch} {precision}{compiled}',
                san_runs['joint backward, batched kernels'],
                san_runs['joint backward'], args, args.repeats, warmup=1))
    return rows


def train_memory(arch, args):
    """Peak memory of one training step, each in a fresh process: on CUDA
    the peak allocated bytes; on CPU (no allocator statistics) the peak
    bytes of activations held for backward at any moment, the part of a
    step's memory that grows with the number of sizes."""
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


class _SavedActivations:
    """Live bytes of the tensors autograd holds for backward, and their peak
    (saved-tensor hooks: a tensor is alive from its forward until its graph
    is freed by backward)."""

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
    model, torch = build(arch, bool(int(san)), device)
    model.train()
    step = _train_step_fn(model, torch, [int(s) for s in sizes.split(',')],
                          int(batch), device, per_size=bool(int(per_size)))
    step()  # warm up (optimizer state, caches)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        tracker = _SavedActivations()
        with torch.autograd.graph.saved_tensors_hooks(tracker.pack,
                                                      lambda held: held.tensor):
            step()
        peak = tracker.peak
    print(json.dumps(dict(peak=peak)))


def count_ops(fn):
    """Operators ``fn`` dispatches that compute (views excluded: they
    launch no kernel), by name: on a GPU that waits on the host, each is a
    launch and its Python and dispatch cost."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.counts = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                self.counts[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    with Count() as mode:
        fn()
    return mode.counts


def bench_ops(args):
    """Operators dispatched by one SAN training step over the five sizes
    (joint and per-size backward) vs the five plain steps, counted (not
    timed: the same on every machine), after a warm-up step."""
    rows = []
    for arch in args.archs:
        san, plain, torch = training_pair(arch, args)
        plain_sum = plain_steps(plain, torch, args)
        plain_sum()
        plain_ops = count_ops(plain_sum)
        for mode, per_size, batched in SAN_STEPS:
            step = san_step(san, torch, args, per_size, batched)
            step()
            san_ops = count_ops(step)
            more = san_ops.copy()
            more.subtract(plain_ops)
            row = dict(name=f'ops per train step {arch} K=5 {mode}',
                       san_ops=sum(san_ops.values()),
                       plain_ops=sum(plain_ops.values()),
                       difference={k: v for k, v in more.most_common()
                                   if v})
            row['ratio'] = row['san_ops'] / row['plain_ops']
            print(f'{row["name"]:46s} SAN {row["san_ops"]} ops, plain '
                  f'{row["plain_ops"]}, ratio {row["ratio"]:.3f}', flush=True)
            rows.append(_record(row))
    return rows


# what the instructions rows count, per kind of forward: the models of one
# comparison, in the child's order within a round
INSTRUCTION_MODELS = {'eager': ('san', 'plain', 'copy', 'regenerate'),
                      'compiled+frozen': ('san', 'plain', 'copy')}
# callgrind's client request to switch its instrumentation on: with it off
# until then, the child imports, builds and compiles about 3x faster under
# valgrind; built where valgrind's header is installed. Once on, it stays on:
# switched off and on again between counts, callgrind wrapped one ResNet-18
# count below zero (2**64 - n)
CALLGRIND_SHIM = """#include <valgrind/callgrind.h>
void start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
"""


def bench_instructions(args):
    """CPU instructions per eval forward, SAN vs plain (same weights), the
    A/A control and, eager, SAN regenerating every kernel, counted by
    valgrind's callgrind in one child process per architecture that builds
    every model. Instruction counts are the same on every run, so they tell
    whether SAN does more work per forward where a noisy machine cannot time
    a 2 % gap. They do not see memory placement (what a cache miss costs),
    which the timed rows and --only placement do."""
    import shutil
    import tempfile
    if args.device != 'cpu':
        raise SystemExit('--only instructions counts CPU instructions '
                         f'(valgrind): use --device cpu, not {args.device}')
    if not shutil.which('valgrind'):
        raise SystemExit('--only instructions needs valgrind on PATH '
                         '(Debian / Ubuntu: apt-get install valgrind)')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shim = callgrind_shim(tmp)
        # one child per architecture, each built and compiled before its
        # instrumentation is switched on; its rows written when it ends
        for arch in args.archs:
            plan = dict(arch=arch, sizes=args.sizes, batches=args.batches,
                        rounds=args.repeats, number=args.instruction_forwards,
                        kinds=args.instruction_kinds,
                        dict_tag_guards=args.dict_tag_guards, shim=shim)
            rows += instruction_rows(*counted_under_callgrind(
                plan, os.path.join(tmp, arch)), plan['number'])
    return rows


def counted_under_callgrind(plan, prefix):
    """Run :func:`instructions_child` for ``plan`` under callgrind (dumps
    and manifest at ``prefix``.*); returns its manifest, the instructions
    per forward of each dump, and the first round's SAN and plain counts
    per function."""
    manifest, out_file = prefix + '.manifest.json', prefix + '.callgrind.out'
    # one thread: OpenMP workers spinning at a barrier add instructions that
    # depend on timing; valgrind runs the threads one at a time
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    subprocess.run(['valgrind', '--tool=callgrind', '--quiet',
                    f'--callgrind-out-file={out_file}',
                    '--collect-atstart=no',
                    f'--instr-atstart={"no" if plan["shim"] else "yes"}',
                    sys.executable, __file__, '--instructions-child',
                    manifest, json.dumps(plan)], check=True, env=env)
    with open(manifest) as f:
        counted = json.load(f)
    per_forward = [callgrind_total(f'{out_file}.{i + 1}') / plan['number']
                   for i in range(len(counted))]
    functions = {}
    for i, entry in enumerate(counted):
        if entry['round'] == 0 and entry['model'] in ('san', 'plain'):
            key = (*entry['case'], entry['kind'], entry['model'])
            functions[key] = callgrind_functions(f'{out_file}.{i + 1}')
    return counted, per_forward, functions


def callgrind_shim(folder):
    """Path of a library (built in ``folder``) whose function switches
    callgrind's instrumentation on, or None where valgrind's header or a C
    compiler is missing (the child then runs instrumented throughout: same
    counts, about 3x slower)."""
    import shutil
    header = '/usr/include/valgrind/callgrind.h'
    if not (os.path.exists(header) and shutil.which('gcc')):
        return None
    source, library = (os.path.join(folder, name)
                       for name in ('shim.c', 'shim.so'))
    with open(source, 'w') as f:
        f.write(CALLGRIND_SHIM)
    subprocess.run(['gcc', '-O1', '-shared', '-fPIC', '-o', library, source],
                   check=True)
    return library


def instruction_calls(kind, san, plain, plain_copy, x):
    """The forwards to count for ``kind``: each model's eval forward (and,
    eager, SAN regenerating every kernel first); compiled+frozen: each
    model through torch.compile(dynamic=False) with inductor's freezing,
    compiled here and checked against the plain model's logits."""
    import torch
    import torch._inductor.config as inductor_config
    models = dict(san=san, plain=plain, copy=plain_copy)
    if kind == 'eager':
        calls = {name: forward_of(model, x) for name, model in models.items()}
        calls['regenerate'] = regenerating(san, calls['san'])
        return calls
    torch._dynamo.reset()
    calls = {}
    with inductor_config.patch(freezing=True), torch.no_grad():
        expected = plain(x, mode='tensor')
        for name, model in models.items():
            compiled = torch.compile(model, dynamic=False)
            check_same_logits(compiled(x, mode='tensor'), expected,
                              f'compiled {name}', 'the eager plain model')
            calls[name] = forward_of(compiled, x)
    return calls


def instructions_child(manifest, plan):
    """Runs under callgrind (collection off at start): builds the plan's
    architecture's SAN, plain and plain-copy models, checks SAN's logits,
    then per size, batch and kind counts ``plan['number']`` forwards of each
    model per round (the order rotating between rounds), one callgrind dump
    per count, with instrumentation on from the first warm-up before a
    count (where the shim was built); writes the dumps' order to
    ``manifest``."""
    import ctypes
    plan = json.loads(plan)
    shim = ctypes.CDLL(plan['shim']) if plan.get('shim') else None
    arch = plan['arch']
    san, plain, torch = san_and_plain(arch, 'cpu')
    if plan.get('dict_tag_guards'):
        torch._dynamo.config.use_recursive_dict_tags_for_guards = True
    plain_copy = copy.deepcopy(plain)
    counted = []
    for size in plan['sizes']:
        for batch in plan['batches']:
            x = plain_weight_input(san, plain, size, batch, 'cpu')
            for kind in plan['kinds']:
                calls = instruction_calls(kind, san, plain, plain_copy, x)
                if shim and not counted:
                    shim.start_instrumentation()
                for call in calls.values():  # warm: caches, JIT, guards
                    call()
                    call()
                order = INSTRUCTION_MODELS[kind]
                for round_index in range(plan['rounds']):
                    for i in rotation(len(order), round_index):
                        torch._C._valgrind_toggle()
                        for _ in range(plan['number']):
                            calls[order[i]]()
                        torch._C._valgrind_toggle_and_dump_stats()
                        counted.append(dict(
                            case=[arch, size, batch], kind=kind,
                            model=order[i], round=round_index))
    with open(manifest, 'w') as f:
        json.dump(counted, f)


def callgrind_total(path):
    """The instruction count (Ir) of one callgrind dump file."""
    with open(path) as f:
        for line in f:
            if line.startswith('totals:') or line.startswith('summary:'):
                total = int(line.split()[1])
                if total >= 2**63:
                    raise ValueError(
                        f'{path}: callgrind counted {total} instructions, '
                        f'a count below zero wrapped around (2**64 - '
                        f'{2**64 - total}): not a count to report')
                return total
    raise ValueError(f'{path}: no "totals:" line; not a callgrind dump?')


def callgrind_functions(path):
    """Instructions (Ir, exclusive) per function of one callgrind dump, by
    callgrind_annotate, named 'function @ library' (library '?' where
    callgrind names none); code generated at run time (oneDNN's JIT
    kernels, named by address, different in every process) summed as one
    entry."""
    output = subprocess.run(
        ['callgrind_annotate', '--inclusive=no', '--threshold=100',
         '--show-percs=no', path], check=True, capture_output=True,
        text=True).stdout
    counts, total = {}, None
    for line in output.splitlines():
        match = re.match(r'^\s*([0-9,]+)\s+(\S.*)$', line)
        if not match:
            continue
        count, name = int(match.group(1).replace(',', '')), match.group(2)
        if name == 'PROGRAM TOTALS':
            total = count
        # the frames on the stack when collection was switched on (main,
        # the interpreter's loop) are each listed with the whole count
        elif ':' in name and count != total:
            if re.match(r'^\?\?\?:0x[0-9a-f]+$', name):
                name = 'code generated at run time @ JIT'
            else:  # 'FILE:FUNCTION [OBJECT]' -> 'FUNCTION @ object's name'
                _, function, obj = re.match(
                    r'^(.*?):(.+?)(?: \[(.+)\])?$', name).groups()
                name = f'{function} @ {os.path.basename(obj or "?")}'
            counts[name] = counts.get(name, 0) + count
    return counts


def instruction_rows(counted, per_forward, functions, number, top=8):
    """Rows from the child's dumps: per case and kind SAN vs plain (with the
    functions whose counts differ most, first round, and the difference
    summed per library: the interpreter's, torch's...), the A/A control
    (plain copy vs plain) and, eager, regenerating every kernel vs cached;
    each with min / median / max over rounds of the instructions per
    forward."""
    by_case = {}
    for entry, count in zip(counted, per_forward):
        key = (*entry['case'], entry['kind'])
        by_case.setdefault(key, {}).setdefault(entry['model'], []).append(
            count)
    rows = []
    for (arch, size, batch, kind), counts in by_case.items():
        case = f'{arch} r={size} b={batch}'
        what = '' if kind == 'eager' else f', {kind}'
        pairs = [(f'instructions per forward{what} {case}', 'san', 'plain'),
                 (f'  control: plain copy vs plain{what} {case}', 'copy',
                  'plain')]
        if 'regenerate' in counts:
            pairs.append((f'  regenerate-every-forward vs cached {case}',
                          'regenerate', 'san'))
        for name, a, b in pairs:
            row = dict(name=name, san=_stats(counts[a]),
                       plain=_stats(counts[b]),
                       ratio=(statistics.median(counts[a]) /
                              statistics.median(counts[b])),
                       unit='instructions per forward',
                       forwards_per_count=number)
            if a == 'san':
                row.update(function_differences(
                    functions.get((arch, size, batch, kind, 'san'), {}),
                    functions.get((arch, size, batch, kind, 'plain'), {}),
                    number, top))
            print(f'{name:46s} SAN {row["san"]["median"]:,.0f}  plain '
                  f'{row["plain"]["median"]:,.0f} instructions  '
                  f'ratio {row["ratio"]:.4f}', flush=True)
            rows.append(_record(row))
    return rows


def function_differences(san_functions, plain_functions, number, top):
    """SAN - plain instructions per forward: the ``top`` functions that
    differ most (``difference``) and the sums per library
    (``difference_by_library``)."""
    difference = {
        function: (san_functions.get(function, 0) -
                   plain_functions.get(function, 0)) / number
        for function in set(san_functions) | set(plain_functions)}
    by_library = {}
    for function, d in difference.items():
        library = function.rsplit(' @ ', 1)[-1]
        by_library[library] = by_library.get(library, 0) + d

    def largest(counts, limit=None):
        return dict(sorted(((name, d) for name, d in counts.items() if d),
                           key=lambda item: -abs(item[1]))[:limit])
    return dict(difference=largest(difference, top),
                difference_by_library=largest(by_library))


def bench_pipeline(args):
    import tempfile

    import cv2
    import numpy as np
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope

    import san_mm  # noqa: F401
    init_default_scope('mmpretrain')
    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp(prefix='san_pipeline_')
    images = []
    for i in range(args.pipeline_images):
        # ImageNet-like JPEGs: smooth content, 375 x 500
        small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        path = os.path.join(folder, f'{i}.jpg')
        cv2.imwrite(path, cv2.resize(small, (500, 375)))
        images.append(path)
    load = dict(type='LoadImageFromFile')
    san = Compose([load, dict(type='ResolutionSample', sizes=TRAIN_SIZES),
                   dict(type='PackInputs')])
    plain = Compose([load, dict(type='RandomResizedCrop', scale=224),
                     dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                     dict(type='PackInputs')])

    def run(pipeline):
        return lambda: [pipeline(dict(img_path=p, gt_label=0)) for p in images]

    row = compare(f'pipeline {len(images)} images (time; lower is better)',
                  run(san), run(plain), args)
    row['images_per_s'] = dict(
        san=len(images) / row['san']['median'],
        plain=len(images) / row['plain']['median'])
    row['throughput_ratio'] = 1 / row['ratio']
    print(f'  images/s SAN {row["images_per_s"]["san"]:.0f}, plain '
          f'{row["images_per_s"]["plain"]:.0f}, ratio '
          f'{row["throughput_ratio"]:.3f}', flush=True)
    return [row]


def run_processes(args):
    """Run this script ``args.processes`` times, one fresh process after
    another, with the same arguments; print and write (``--out``) every
    process's rows and, per row, the ratios and their median. --out is
    rewritten after every process ("complete": false until the last), so a
    run stopped by a timeout or a kill keeps the processes that finished."""
    import tempfile
    processes, machine = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            out = os.path.join(tmp, f'process{i}.json')
            order = []
            if args.compile_order == 'alternate':
                order = ['--compile-order',
                         ('san-first', 'plain-first')[i % 2]]
            print(f'--- process {i + 1} of {args.processes} '
                  + ' '.join(order), flush=True)
            # the same arguments; the last --processes / --out /
            # --compile-order win (argparse)
            subprocess.run([sys.executable, __file__, *sys.argv[1:],
                            '--processes', '1', '--out', out, *order],
                           check=True)
            with open(out) as f:
                result = json.load(f)
            machine = result['machine']
            processes.append(result['rows'])
            _save_processes(args, machine, processes,
                            complete=len(processes) == args.processes)
    print('--- ratio per process, median over processes')
    for row in summarise_processes(processes):
        ratios = ' / '.join(f'{r:.3f}' for r in row['ratios'])
        orders = ''.join(
            f', {first} {ratio:.3f}' for first, ratio in row.get(
                'median_ratio_by_compile_order', {}).items())
        print(f'{row["name"]:60s} {ratios}  median {row["median_ratio"]:.3f}'
              + orders)


def _save_processes(args, machine, processes, complete):
    """Write (--out) the processes run so far and their summary."""
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=machine,
                           command='python benchmarks/speed.py ' +
                           ' '.join(sys.argv[1:]),
                           complete=complete,
                           summary=summarise_processes(processes),
                           processes=processes), f, indent=1)


def summarise_processes(processes):
    """Per row name (in first-process order): its ratio in every process and
    their median; for a compiled row that ran in both compile orders
    (``--compile-order alternate``), also the median of each order."""
    ratios, by_order = {}, {}
    for rows in processes:
        for row in rows:
            ratios.setdefault(row['name'], []).append(row['ratio'])
            if 'compile_order' in row:
                first = f"{row['compile_order'][0]} first"
                by_order.setdefault(row['name'], {}).setdefault(
                    first, []).append(row['ratio'])
    summary = []
    for name, values in ratios.items():
        summary.append(dict(name=name, ratios=values,
                            median_ratio=statistics.median(values)))
        if len(by_order.get(name, {})) > 1:  # both orders ran
            summary[-1]['median_ratio_by_compile_order'] = {
                first: statistics.median(group)
                for first, group in by_order[name].items()}
    return summary


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--memory-probe':
        return memory_probe(*sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == '--instructions-child':
        return instructions_child(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+',
                        default=['inference', 'train', 'pipeline'],
                        choices=['inference', 'compiled', 'aoti',
                                 'cudagraph', 'dynamo', 'placement', 'train',
                                 'ops', 'codegen', 'pipeline',
                                 'instructions'])
    parser.add_argument('--archs', nargs='+', default=list(ARCHS),
                        choices=list(ARCHS))
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 160, 96])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--precisions', nargs='+', default=['fp32'],
                        choices=list(PRECISIONS),
                        help='train rows: fp32, and fp16 / bf16 through '
                        "mmengine's AmpOptimWrapper (CUDA)")
    parser.add_argument('--train-compile', action='store_true',
                        help='train rows with both backbones compiled, as '
                        "the SAN loops do for the runner's compile option "
                        '(with --compile-mode)')
    parser.add_argument('--train-cuda-graph', action='store_true',
                        help='train rows with every step (SAN\'s, and each '
                        'plain one) captured in a CUDA graph and replayed: '
                        'the GPU work of the steps, without the host '
                        'launching it (CUDA; fp32: the whole step; fp16 / '
                        'bf16: forward and scaled backward, the AMP '
                        'scaler\'s step eager)')
    parser.add_argument('--no-train-memory', dest='train_memory',
                        action='store_false',
                        help='train rows without the peak-memory probes (7 '
                        'fresh processes per architecture)')
    parser.add_argument('--pipeline-images', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=5,
                        help='alternating SAN / plain measurement rounds')
    parser.add_argument('--min-run-time', type=float, default=0.5,
                        help='seconds of calls per measurement '
                        '(Timer.blocked_autorange)')
    parser.add_argument('--freeze', nargs='?', const='both', default='none',
                        choices=['none', 'both', 'only'],
                        help='compiled and dynamo rows also (--freeze) or '
                        'only (--freeze only) with inductor freezing')
    parser.add_argument('--compile-mode', default=None,
                        choices=['default', 'reduce-overhead',
                                 'max-autotune', 'max-autotune-no-cudagraphs'],
                        help="compiled rows: torch.compile's mode "
                        '(reduce-overhead: CUDA graphs on a GPU)')
    parser.add_argument('--guard-eval', default='full',
                        choices=['full', 'skip', 'both'],
                        help="compiled rows: dynamo's guards evaluated on "
                        'every call (full, the default), or only those that '
                        'tell the compiled graphs apart, once every shape is '
                        "compiled (skip: torch.compiler.set_stance's "
                        'skip_guard_eval_unsafe, for serving a model that no '
                        'longer changes), or both (one after the other for '
                        'each row, in the same process)')
    parser.add_argument('--compile-part', default='model',
                        choices=['model', 'backbone', 'backbone-method'],
                        help='compiled and codegen rows: compile (and time) '
                        'the whole classifier or the backbone alone '
                        '(torch.compile of it, or backbone-method: its own '
                        ".compile(), the SAN loops' way)")
    parser.add_argument('--control', action='store_true',
                        help='inference, compiled and aoti rows also time the '
                        'plain model against a copy of itself (an A/A control: '
                        'how far from 1 a ratio drifts on this machine when '
                        'the models are the same)')
    parser.add_argument('--san-without-guards', choices=list(SAN_GUARD_GROUPS),
                        help='compiled rows: SAN compiled without one group '
                        'of its own guards (unsafe: a diagnosis of what the '
                        'group costs per call, not a way to serve)')
    parser.add_argument('--guard-attribution', action='store_true',
                        help='dynamo rows: also SAN compiled without each of '
                        'its own guard groups (its private BNs\' sets, the '
                        'scale context, the residual kernels), against the '
                        'plain model with all of its guards')
    parser.add_argument('--evict-mib', type=int, default=16,
                        help="memory written before each 'cold' dynamo call")
    parser.add_argument('--compile-order', default='san-first',
                        choices=['san-first', 'plain-first', 'alternate'],
                        help='compiled rows: which model compiles first (with '
                        'freezing, its folded weights are allocated first); '
                        'alternate: san first in odd processes, plain first '
                        'in even ones (--processes), to balance out where '
                        'the allocator puts each')
    parser.add_argument('--dict-tag-guards', action='store_true',
                        help="compiled and dynamo rows with dynamo's "
                        'recursive dict-tag guards (torch._dynamo.config.'
                        'use_recursive_dict_tags_for_guards, off by default '
                        "in torch): a module subtree whose dicts' version "
                        'tags are unchanged since the last call is not '
                        'checked again')
    parser.add_argument('--processes', type=int, default=1,
                        help='run everything in this many fresh processes, '
                        'one after another, and report each row\'s ratio '
                        'per process and their median (where a process '
                        'places its tensors moves compiled batch-1 ratios '
                        'by a few %%: one process cannot judge a 2 %% gap)')
    parser.add_argument('--instruction-kinds', nargs='+', default=['eager'],
                        choices=list(INSTRUCTION_MODELS),
                        help='instructions rows: eager forwards, and / or '
                        'torch.compile(dynamic=False) with inductor freezing '
                        '(with --dict-tag-guards: those guards)')
    parser.add_argument('--instruction-forwards', type=int, default=3,
                        help='instructions rows: forwards per count (the '
                        'count is divided by it)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', help='write all rows as JSON')
    args = parser.parse_args()
    if args.san_without_guards and args.compile_mode:
        parser.error('--san-without-guards passes torch.compile options, '
                     'which torch.compile refuses together with a mode: '
                     f'drop --compile-mode {args.compile_mode}')
    if args.processes > 1:
        return run_processes(args)

    import torch

    from san_mm.analysis.timing import processor_name
    machine = (f'{processor_name()}, '
               f'{os.cpu_count()} CPU cores, torch {torch.__version__}, '
               f'{torch.get_num_threads()} threads')
    # glibc's allocator settings move batch-1 CPU timings (see placement)
    machine += ''.join(f', {name}={value}' for name, value in
                       sorted(os.environ.items()) if name.startswith('MALLOC_'))
    if args.device.startswith('cuda'):
        machine += f', {torch.cuda.get_device_name()}'
    if 'instructions' in args.only:
        machine += ", instructions: valgrind's callgrind, 1 thread"
    if args.dict_tag_guards:
        if not hasattr(torch._dynamo.config,
                       'use_recursive_dict_tags_for_guards'):
            parser.error(f'--dict-tag-guards: torch {torch.__version__} has '
                         'no recursive dict-tag guards (torch._dynamo.config.'
                         'use_recursive_dict_tags_for_guards); drop the flag')
        torch._dynamo.config.use_recursive_dict_tags_for_guards = True
        machine += ', dynamo use_recursive_dict_tags_for_guards=True'
    print(f'machine: {machine}; device {args.device}; repeats {args.repeats}')
    _RESULTS.update(path=args.out, machine=machine)
    rows = []
    if 'inference' in args.only:
        rows += bench_inference(args)
    if 'compiled' in args.only:
        rows += bench_compiled(args)
    if 'aoti' in args.only:
        rows += bench_aoti(args)
    if 'cudagraph' in args.only:
        rows += bench_cudagraph(args)
    if 'dynamo' in args.only:
        rows += bench_dynamo(args)
    if 'placement' in args.only:
        rows += bench_placement(args)
    if 'train' in args.only:
        rows += bench_train(args)
    if 'ops' in args.only:
        rows += bench_ops(args)
    if 'codegen' in args.only:
        rows += bench_codegen(args)
    if 'pipeline' in args.only:
        rows += bench_pipeline(args)
    if 'instructions' in args.only:
        rows += bench_instructions(args)
    # the rows as returned (some carry more: compile seconds, memory)
    _RESULTS['rows'] = rows
    _save_results(complete=True)


if __name__ == '__main__':
    main()
