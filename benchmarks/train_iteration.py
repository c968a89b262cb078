"""Seconds per training iteration of a config under mmengine's runner: eager, compiled, CUDA graphs.

    python benchmarks/train_iteration.py configs/fashion_mnist/san_resnet18_fmnist.py \
        --iters 200 --variants eager compile reduce-overhead \
        --out docs/results/speed_fmnist_iteration_h200_cuda.json \
        [--amp] [--cfg-options train_dataloader.num_workers=8 \
         train_dataloader.persistent_workers=True]

Each variant is a real ``tools/train.py`` run in a fresh process (data loading, hooks, checkpoints
and logging included, as a user's job has them), on ``--iters`` iterations' worth of the training
split and without validation:
  eager            the config as it is
  compile          ``compile=True`` (the SAN loops compile the backbone: one static graph per size)
  reduce-overhead  ``compile.mode=reduce-overhead``: the compiled graphs replayed as CUDA graphs
  max-autotune     ``compile.mode=max-autotune`` (autotuned kernels, CUDA graphs too)
  aot-eager        ``compile.backend=aot_eager``: dynamo and AOTAutograd around eager kernels (what
                   compiling costs per call, without what inductor's kernels save)
  batched-kernels  eager, ``model.batch_kernel_generation=True`` (every size's kernels of a step
                   from one op per conv: fewer launches)
  cuda-graph       ``model.cuda_graph_step=True``: the step's forward, losses and backward
                   captured in one CUDA graph after three eager steps and replayed (GPU only)
  cuda-graph-batched  both: fewer kernels in the captured step (GPU only)
The runner logs the mean time of every window of ``--log-interval`` iterations; a variant's
iteration time is the median of those windows after the first ``--skip-windows`` (compiling,
recording CUDA graphs, cuDNN's first calls, data workers starting). A variant that fails or
runs out of ``--timeout`` is recorded with its return code and the end of its log; the others
still run. Compiled variants log dynamo's recompilations and graph breaks, and inductor's
performance hints (e.g. why a graph skipped CUDA graphs) (``TORCH_LOGS``); the lines that say
so are kept with the variant's result.
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = {
    'eager': [],
    'compile': ['compile=True'],
    'reduce-overhead': ['compile.mode=reduce-overhead'],
    'max-autotune': ['compile.mode=max-autotune'],
    'aot-eager': ['compile.backend=aot_eager'],
    'batched-kernels': ['model.batch_kernel_generation=True'],
    'cuda-graph': ['model.cuda_graph_step=True'],
    'cuda-graph-batched': ['model.cuda_graph_step=True',
                           'model.batch_kernel_generation=True'],
}
# log lines worth keeping with a variant's result: why a graph recompiled,
# ran eagerly or skipped CUDA graphs
NOTEWORTHY = ('cudagraph', 'CUDAGraph', 'recompil', 'graph break',
              'Graph break', 'Traceback', 'Error')


def batch_size_of(config, cfg_options):
    """The training batch size after ``cfg_options`` (``KEY=VALUE`` strings)."""
    from san_mm.apis.cli import config_with_options
    return config_with_options(config, cfg_options).train_dataloader.batch_size


def window_times(work_dir):
    """``(iteration, seconds per iteration, data seconds)`` of each logged
    training window, from the runner's ``vis_data/scalars.json``."""
    found = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if not found:
        return []
    windows = []
    with open(sorted(found)[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'time' in record and 'lr' in record:  # training windows only
                windows.append((record['iter'], record['time'],
                                record.get('data_time')))
    return windows


def summarise(windows, skip_windows):
    """Median seconds per iteration (and of data loading) over the windows
    after the first ``skip_windows``; the first window's time, which holds
    the compilation."""
    if len(windows) <= skip_windows:
        return dict(iteration_seconds=None, windows=len(windows))
    steady = windows[skip_windows:]
    data = [d for _, _, d in steady if d is not None]
    return dict(
        iteration_seconds=statistics.median(t for _, t, _ in steady),
        iteration_seconds_min=min(t for _, t, _ in steady),
        iteration_seconds_max=max(t for _, t, _ in steady),
        data_seconds=statistics.median(data) if data else None,
        first_window_seconds=windows[0][1],
        windows=len(windows), windows_used=len(steady))


def noteworthy(lines, limit=40):
    """The log lines worth keeping (:data:`NOTEWORTHY`), those about CUDA
    graphs first (a skipped CUDA graph explains a slow variant; the expected
    recompilation per size fills many lines)."""
    found = [line[:300] for line in lines
             if any(word in line for word in NOTEWORTHY)]
    first = [line for line in found if 'cudagraph' in line.lower()]
    return (first + [line for line in found if line not in first])[:limit]


def run_variant(name, args, work_dir, batch):
    """``tools/train.py`` with variant ``name``'s options on ``args.iters``
    batches of ``batch`` images; its result (times, notes)."""
    os.makedirs(work_dir, exist_ok=True)
    options = [
        # exactly --iters iterations of the training split, no validation
        f'train_dataloader.dataset.indices={args.iters * batch}',
        'train_cfg.max_epochs=1', 'train_cfg.val_begin=1000000',
        f'default_hooks.logger.interval={args.log_interval}',
        *VARIANTS[name], *(args.cfg_options or [])]
    command = [sys.executable, osp.join(REPO, 'tools', 'train.py'),
               args.config, '--work-dir', work_dir, '--cfg-options', *options]
    if args.amp:
        command.insert(3, '--amp')
    print(f'--- {name}: {" ".join(command)}', flush=True)
    log_path = osp.join(work_dir, 'train_stdout.log')
    env = dict(os.environ)
    if any(option.startswith('compile') for option in VARIANTS[name]):
        # compiled: why a graph recompiles, breaks or skips CUDA graphs
        env.setdefault('TORCH_LOGS', 'recompiles,graph_breaks,perf_hints')
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        try:
            returncode = subprocess.run(command, stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            returncode = 'timeout'
    wall = time.perf_counter() - start
    with open(log_path, errors='replace') as log:
        lines = log.read().splitlines()
    result = dict(variant=name, returncode=returncode, wall_seconds=wall,
                  cfg_options=options,
                  **summarise(window_times(work_dir), args.skip_windows))
    result['notes'] = noteworthy(lines)
    if returncode != 0:
        result['log_tail'] = lines[-30:]
    seconds = result['iteration_seconds']
    print(f'{name:16s} rc={returncode} wall {wall:.0f} s, iteration '
          + (f'{seconds * 1e3:.1f} ms' if seconds else 'n/a')
          + (f' (data {result["data_seconds"] * 1e3:.1f} ms)'
             if result.get('data_seconds') is not None else ''), flush=True)
    return result


def machine():
    """san_mm.analysis.timing's description of this machine and its GPU."""
    import torch

    from san_mm.analysis.timing import machine_info
    return machine_info('cuda' if torch.cuda.is_available() else 'cpu')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--variants', nargs='+', default=['eager', 'compile'],
                        choices=list(VARIANTS))
    parser.add_argument('--iters', type=int, default=200,
                        help='training iterations per variant')
    parser.add_argument('--log-interval', type=int, default=10)
    parser.add_argument('--skip-windows', type=int, default=2,
                        help='logged windows left out of the median (warm-up)')
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--timeout', type=float, default=None,
                        help='seconds each variant may run')
    parser.add_argument('--work-dir', help='keep the runs here (default: '
                        'a temporary directory)')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        help='passed on to every run, after the variant\'s own')
    parser.add_argument('--out', help='write the results as JSON')
    args = parser.parse_args()
    if args.iters < args.log_interval * (args.skip_windows + 1):
        parser.error(f'--iters {args.iters} leaves no logged window after '
                     f'the first {args.skip_windows} of {args.log_interval} '
                     'iterations')

    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or tmp
        batch = batch_size_of(args.config, args.cfg_options)
        results = [run_variant(name, args, osp.join(root, name), batch)
                   for name in args.variants]
    eager = next((r['iteration_seconds'] for r in results
                  if r['variant'] == 'eager'), None)
    for result in results:
        if eager and result['iteration_seconds']:
            result['speedup_over_eager'] = eager / result['iteration_seconds']
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=machine(),
                           command='python benchmarks/train_iteration.py ' +
                           ' '.join(sys.argv[1:]),
                           results=results), f, indent=1)


if __name__ == '__main__':
    main()
