"""Small-scale reproduction of the SAN paper's claims on Fashion-MNIST, every method under one protocol.

    python benchmarks/fashion_mnist_reproduction.py [--seeds 0 1] [--train-images 14080]
        [--epochs 5] [--test-images 5000] [--work-dir work_dirs/fmnist_reproduction]

Protocol (defaults; about one hour on 2 CPU cores): ResNet-18 width 16 (3x3 stride-2 stem, no
max-pool), the first --train-images training images, --epochs epochs, batch 128, SGD momentum 0.9,
lr 0.1, cosine, weight decay 1e-4, random resized crop (0.5-1) + flip; training sizes 28/24/20/16/12
(the paper's 224...96 ratio), unseen sizes 32/26/22/18/14/10; top-1 on the first --test-images
test images. Methods:
  baseline@r   the same ResNet-18 without meta network, one BN, trained at size r only (r = each
               training size); baseline@28 evaluated everywhere is the "one network at 28" method
  no_meta      shared kernels + private BN + dense KD (RS-Net style)
  no_kd        SAN without scale distillation
  san          SAN: generated kernels + private BN + dense KD
SAN-type models are evaluated at unseen sizes in the four inference modes (proxy, ideal, calibrated
on 512 training images, data-free). Prints mean +- std over seeds; writes results.json,
results.md and accuracy_vs_size.png into the work directory.

    python benchmarks/fashion_mnist_reproduction.py --tables [--check]

rewrites the tables in docs/results.md from docs/results/fashion_mnist_reproduction.json
(no training).
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from generated_sections import write_section  # noqa: E402

RESULTS = osp.join(REPO, 'docs', 'results', 'fashion_mnist_reproduction.json')
#: The generated section's page and name, and the command that writes it.
DOC = osp.join(REPO, 'docs', 'results.md')
DOC_SECTION = 'fashion_mnist_reproduction'
DOC_COMMAND = 'python benchmarks/fashion_mnist_reproduction.py --tables'

CONFIGS = osp.join(REPO, 'configs', 'fashion_mnist')
TRAIN_SIZES = [28, 24, 20, 16, 12]
UNSEEN_SIZES = [32, 26, 22, 18, 14, 10]
ALL_SIZES = sorted(TRAIN_SIZES + UNSEEN_SIZES, reverse=True)
MODES = ('proxy', 'ideal', 'calibrated', 'data_free')

METHODS = {
    'san': ('san_resnet18_fmnist.py', {}),
    'no_kd': ('san_resnet18_fmnist_no_kd.py', {}),
    'no_meta': ('san_resnet18_fmnist_no_meta.py', {}),
}
METHODS.update({
    f'baseline@{size}': ('resnet18_fmnist_single_size.py',
                         {'train_sizes': [size]})
    for size in TRAIN_SIZES
})


def build_cfg(config, options, args, seed, work_dir):
    from mmengine.config import Config

    from san_mm.utils import apply_overrides
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    options = dict(options)
    options.update({
        'train_dataloader.dataset.indices': args.train_images,
        'test_dataloader.dataset.indices': args.test_images,
        'train_cfg.max_epochs': args.epochs,
        'param_scheduler.end': args.epochs,
        'param_scheduler.T_max': args.epochs,
        'randomness.seed': seed,
        'default_hooks.logger.interval': 50,
    })
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)
    # No validation during training: one protocol, last epoch, test at the end.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.pop('val_interval', None)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=args.epochs)
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir) + f'_{time.time_ns()}'
    return cfg


def test_checkpoint(cfg, checkpoint, mode, work_dir, name):
    """Top-1 of ``checkpoint`` at every size of ALL_SIZES in ``mode``
    (calibrated: on 512 training images); {size: top-1}."""
    from mmengine.runner import Runner
    test_cfg = copy.deepcopy(cfg)
    test_cfg.load_from = checkpoint
    test_cfg.test_cfg.test_sizes = ALL_SIZES
    test_cfg.custom_hooks = [dict(type='PerSizeBNHook', inference_mode=mode,
                                  calibration_images=512)]
    test_cfg.work_dir = osp.join(work_dir, f'test_{mode}')
    test_cfg.experiment_name = f'{name}_{mode}_{time.time_ns()}'
    metrics = Runner.from_cfg(test_cfg).test()
    return {s: float(metrics[f'accuracy/top1@{s}']) for s in ALL_SIZES}


def run_method(name, args, seed):
    from mmengine.runner import Runner
    config, options = METHODS[name]
    work_dir = osp.join(args.work_dir, f'seed{seed}', name.replace('@', '_'))
    cfg = build_cfg(config, options, args, seed, work_dir)
    start = time.time()
    Runner.from_cfg(copy.deepcopy(cfg)).train()
    train_minutes = (time.time() - start) / 60
    checkpoint = osp.join(work_dir, f'epoch_{args.epochs}.pth')
    modes = ('proxy', ) if name.startswith('baseline') else MODES
    results = {mode: test_checkpoint(cfg, checkpoint, mode, work_dir,
                                     name.replace('@', '_'))
               for mode in modes}
    return dict(results=results, train_minutes=train_minutes)


def summarise(runs, seeds):
    """{method/mode: {size: (mean, std)}} over seeds."""
    rows = {}
    for name in METHODS:
        for mode in runs[seeds[0]][name]['results']:
            key = name if mode == 'proxy' and not name.startswith(
                ('san', 'no_')) else f'{name} {mode}'
            rows[key] = {
                size: (float(np.mean(values)), float(np.std(values)))
                for size in ALL_SIZES
                for values in [[runs[s][name]['results'][mode][size]
                                for s in seeds]]
            }
    return rows


def fmt(mean_std):
    mean, std = mean_std
    return f'{mean:.2f} ± {std:.2f}'


def tables(rows, runs, seeds, heading='###'):
    own = {s: rows[f'baseline@{s}'][s] for s in TRAIN_SIZES}
    out = [f'{heading} Training sizes (top-1 %, mean ± std over seeds '
           f'{", ".join(map(str, seeds))})', '',
           '| size | baseline (own size) | one net @28 | no meta | no KD | SAN |',
           '|---|---|---|---|---|---|']
    for s in TRAIN_SIZES:
        out.append(f'| {s} | {fmt(own[s])} | {fmt(rows["baseline@28"][s])} | '
                   f'{fmt(rows["no_meta proxy"][s])} | '
                   f'{fmt(rows["no_kd proxy"][s])} | {fmt(rows["san proxy"][s])} |')
    out += ['', f'{heading} Unseen sizes (top-1 %)', '',
            '| size | one net @28 | no meta (proxy) | SAN proxy | SAN ideal | '
            'SAN calibrated | SAN data-free |', '|---|---|---|---|---|---|---|']
    for s in UNSEEN_SIZES:
        out.append(f'| {s} | {fmt(rows["baseline@28"][s])} | '
                   f'{fmt(rows["no_meta proxy"][s])} | '
                   + ' | '.join(fmt(rows[f'san {m}'][s]) for m in MODES) + ' |')
    minutes = {name: np.mean([runs[s][name]['train_minutes'] for s in seeds])
               for name in METHODS}
    baselines = [minutes[f'baseline@{s}'] for s in TRAIN_SIZES]
    out += ['', f'Training minutes per run: SAN {minutes["san"]:.1f}, no KD '
            f'{minutes["no_kd"]:.1f}, no meta {minutes["no_meta"]:.1f}, baselines '
            + ' / '.join(f'{m:.1f}' for m in baselines)
            + f' ({TRAIN_SIZES[0]} … {TRAIN_SIZES[-1]}; {sum(baselines):.1f} for all of '
            'them).']
    return '\n'.join(out)


def load_runs(path):
    """A results file's runs and seeds, with int seeds and sizes (JSON keys
    are strings)."""
    with open(path) as f:
        data = json.load(f)
    runs = {int(seed): {
        name: dict(run, results={
            mode: {int(size): top1 for size, top1 in per_size.items()}
            for mode, per_size in run['results'].items()})
        for name, run in by_name.items()}
        for seed, by_name in data['runs'].items()}
    return runs, sorted(runs)


def doc_tables(path=RESULTS):
    """The section of docs/results.md: the two tables and the training
    minutes."""
    runs, seeds = load_runs(path)
    return tables(summarise(runs, seeds), runs, seeds)


def add_protocol_args(parser, work_dir, train_images=12800):
    """Arguments shared by the Fashion-MNIST benchmarks."""
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--train-images', type=int, default=train_images)
    parser.add_argument('--test-images', type=int, default=5000)
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       work_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_protocol_args(parser, 'fmnist_reproduction', train_images=14080)
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument('--tables', action='store_true',
                        help='only rewrite the section of docs/results.md from '
                        'docs/results/fashion_mnist_reproduction.json')
    parser.add_argument('--check', action='store_true',
                        help='with --tables: write nothing; exit 1 if the '
                        'section is out of date')
    args = parser.parse_args()
    if args.tables:
        if not write_section(DOC, DOC_SECTION, DOC_COMMAND, doc_tables(),
                             check=args.check) and args.check:
            sys.exit(1)
        return
    for name in list(METHODS):
        if name not in args.methods:
            METHODS.pop(name)

    import san_mm  # noqa: F401
    from san_mm.analysis import plot_accuracy_vs_size
    from san_mm.datasets import prepare_fashion_mnist
    prepare_fashion_mnist(osp.join(REPO, 'data', 'fashion_mnist'))
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    runs = {}
    for seed in args.seeds:
        runs[seed] = {}
        for name in METHODS:
            runs[seed][name] = run_method(name, args, seed)
            with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
                json.dump(dict(args=vars(args), runs=runs), f, indent=1)
    rows = summarise(runs, args.seeds)
    text = tables(rows, runs, args.seeds) if {'san', 'no_kd', 'no_meta'} <= set(
        METHODS) and all(f'baseline@{s}' in METHODS for s in TRAIN_SIZES) \
        else json.dumps(rows, indent=1)
    total = (time.time() - start) / 60
    text += (f'\n\nProtocol: {args.train_images} training images, {args.epochs} '
             f'epochs, {args.test_images} test images, seeds {args.seeds}; '
             f'total {total:.0f} min on {os.cpu_count()} CPU cores.')
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    curves = {key: {s: v[0] for s, v in values.items()}
              for key, values in rows.items()
              if key in ('baseline@28', 'no_meta proxy', 'san proxy',
                         'san ideal', 'san calibrated', 'san data_free')}
    if all(f'baseline@{s}' in rows for s in TRAIN_SIZES):
        curves['baselines (own size)'] = {
            s: rows[f'baseline@{s}'][s][0] for s in TRAIN_SIZES}
    plot_accuracy_vs_size(curves, osp.join(args.work_dir, 'accuracy_vs_size.png'),
                          train_sizes=TRAIN_SIZES,
                          title='Fashion-MNIST, ResNet-18 width 16')
    print(text)


if __name__ == '__main__':
    main()
