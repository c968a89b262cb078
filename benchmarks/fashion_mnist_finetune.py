"""SAN fine-tuned from a plain single-size network vs SAN from scratch, on Fashion-MNIST.

    python benchmarks/fashion_mnist_finetune.py [--seeds 0 1] [--epochs 5] [--finetune-epochs 2]
        [--train-images 12800] [--test-images 5000] [--work-dir work_dirs/fmnist_finetune]

Same protocol as benchmarks/fashion_mnist_reproduction.py (ResNet-18 width 16, batch 128, SGD,
cosine, sizes 28/24/20/16/12, unseen 32/26/22/18/14/10). Three runs per seed:
  plain@28   configs/fashion_mnist/resnet18_fmnist_single_size.py, --epochs epochs at 28 only
  finetuned  configs/fashion_mnist/san_resnet18_fmnist_from_single_size.py: SAN initialised from
             plain@28's last checkpoint (B = kernel, A = 0, its BN in every set, its head), then
             --finetune-epochs epochs at all five sizes with lr 0.02
  scratch    configs/fashion_mnist/san_resnet18_fmnist.py, --epochs epochs from scratch
Every model is tested at all 11 sizes (proxy, and calibrated on 512 training images for the SAN
models); the fine-tuned model is also tested before fine-tuning (right after initialisation:
plain@28's accuracy must be reproduced at 28). Training time is wall-clock on this machine; the
fine-tuned route's total is plain@28 + fine-tuning. Writes results.json and results.md into the
work directory and prints the table. Wall-clock minutes of the accuracy runs include whatever else
the machine did meanwhile; `--timing-only` measures the median seconds per training iteration of
each route alone (run it on an idle machine) and writes timing.md / timing.json.

    python benchmarks/fashion_mnist_finetune.py --tables [--check]

rewrites the tables in docs/training.md from docs/results/fashion_mnist_finetune.json (the
accuracy runs' results.json under "accuracy", timing.json under "timing"; no training).
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

from fashion_mnist_reproduction import (ALL_SIZES, TRAIN_SIZES,  # noqa: E402
                                        add_protocol_args, build_cfg,
                                        test_checkpoint)
from generated_sections import write_section  # noqa: E402

RESULTS = osp.join(REPO, 'docs', 'results', 'fashion_mnist_finetune.json')
#: The generated section's page and name, and the command that writes it.
DOC = osp.join(REPO, 'docs', 'training.md')
DOC_SECTION = 'fashion_mnist_finetune'
DOC_COMMAND = 'python benchmarks/fashion_mnist_finetune.py --tables'

RUNS = {
    'plain@28': 'resnet18_fmnist_single_size.py',
    'finetuned': 'san_resnet18_fmnist_from_single_size.py',
    'scratch': 'san_resnet18_fmnist.py',
}


def run(name, args, seed, plain_checkpoint=None):
    from mmengine.runner import Runner
    epochs = args.finetune_epochs if name == 'finetuned' else args.epochs
    work_dir = osp.join(args.work_dir, f'seed{seed}', name.replace('@', '_'))
    run_args = copy.copy(args)
    run_args.epochs = epochs
    cfg = build_cfg(RUNS[name], {}, run_args, seed, work_dir)
    results = {}
    if name == 'finetuned':
        cfg.model.init_cfg.checkpoint = plain_checkpoint
        # Before any fine-tuning: the initialised model saved as a checkpoint.
        import torch
        from mmpretrain.registry import MODELS
        model = MODELS.build(copy.deepcopy(cfg.model))
        model.init_weights()
        os.makedirs(work_dir, exist_ok=True)
        init_checkpoint = osp.join(work_dir, 'initialised.pth')
        torch.save(dict(state_dict=model.state_dict()), init_checkpoint)
        results['initialised proxy'] = test_checkpoint(
            cfg, init_checkpoint, 'proxy', work_dir, f'{name}_init')
    start = time.time()
    Runner.from_cfg(copy.deepcopy(cfg)).train()
    train_minutes = (time.time() - start) / 60
    checkpoint = osp.join(work_dir, f'epoch_{epochs}.pth')
    modes = ('proxy', ) if name == 'plain@28' else ('proxy', 'calibrated')
    for mode in modes:
        results[mode] = test_checkpoint(cfg, checkpoint, mode, work_dir, name)
    return dict(results=results, train_minutes=train_minutes,
                checkpoint=checkpoint)


def seconds_per_iteration(name, args, iterations=20, warmup=3):
    """Median wall-clock seconds of one training iteration (data loading
    included) of a route's config, alone on the machine: the training-time
    comparison, free of whatever else ran during the accuracy runs."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class IterationTimer(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.stamps = []

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            self.stamps.append(time.perf_counter())

    timing_args = copy.copy(args)
    timing_args.epochs = 1
    timing_args.train_images = 128 * (iterations + warmup + 1)
    work_dir = osp.join(args.work_dir, 'timing', name.replace('@', '_'))
    cfg = build_cfg(RUNS[name], {}, timing_args, 0, work_dir)
    cfg.model.pop('init_cfg', None)  # the weights do not change the time
    runner = Runner.from_cfg(cfg)
    timer = IterationTimer()
    runner.register_hook(timer)
    runner.train()
    gaps = np.diff(timer.stamps)[warmup:]
    return float(np.median(gaps))


def timing_table(args):
    per_iter = {name: seconds_per_iteration(name, args) for name in RUNS}
    iters_per_epoch = args.train_images // 128
    minutes = {
        'plain@28': per_iter['plain@28'] * iters_per_epoch * args.epochs / 60,
        'finetuned': per_iter['finetuned'] * iters_per_epoch *
        args.finetune_epochs / 60,
        'scratch': per_iter['scratch'] * iters_per_epoch * args.epochs / 60,
    }
    total = minutes['plain@28'] + minutes['finetuned']
    return '\n'.join([
        '### Training time on a quiet machine (median s/iteration x iterations)',
        '', '| route | s/iteration | iterations | minutes |', '|---|---|---|---|',
        f'| plain@28 | {per_iter["plain@28"]:.3f} | '
        f'{iters_per_epoch * args.epochs} | {minutes["plain@28"]:.2f} |',
        f'| + SAN fine-tuning | {per_iter["finetuned"]:.3f} | '
        f'{iters_per_epoch * args.finetune_epochs} | {minutes["finetuned"]:.2f} |',
        f'| = fine-tuned route | | | {total:.2f} ({total / minutes["scratch"]:.2f}x '
        'scratch) |',
        f'| SAN from scratch | {per_iter["scratch"]:.3f} | '
        f'{iters_per_epoch * args.epochs} | {minutes["scratch"]:.2f} |',
    ]), dict(seconds_per_iteration=per_iter, minutes=minutes)


def fmt(values):
    return f'{np.mean(values):.2f} ± {np.std(values):.2f}'


def table(runs, seeds, args):
    rows = [('plain@28 (proxy)', 'plain@28', 'proxy'),
            ('SAN initialised from plain@28, before fine-tuning', 'finetuned',
             'initialised proxy'),
            (f'SAN fine-tuned {args.finetune_epochs} ep (proxy)', 'finetuned',
             'proxy'),
            (f'SAN fine-tuned {args.finetune_epochs} ep (calibrated)',
             'finetuned', 'calibrated'),
            (f'SAN from scratch {args.epochs} ep (proxy)', 'scratch', 'proxy'),
            (f'SAN from scratch {args.epochs} ep (calibrated)', 'scratch',
             'calibrated')]
    head = '| model | ' + ' | '.join(
        f'{s}{"*" if s in TRAIN_SIZES else ""}' for s in ALL_SIZES) + \
        ' | mean train sizes |'
    out = [f'### Top-1 % per size (mean ± std over seeds {seeds}; * = training size)',
           '', head, '|' + '---|' * (len(ALL_SIZES) + 2)]
    for label, name, mode in rows:
        per_size = [[runs[s][name]['results'][mode][size] for s in seeds]
                    for size in ALL_SIZES]
        train_mean = [np.mean([runs[s][name]['results'][mode][size]
                               for size in TRAIN_SIZES]) for s in seeds]
        out.append(f'| {label} | ' + ' | '.join(fmt(v) for v in per_size) +
                   f' | {fmt(train_mean)} |')
    minutes = {name: [runs[s][name]['train_minutes'] for s in seeds]
               for name in RUNS}
    finetune_total = [p + f for p, f in zip(minutes['plain@28'],
                                            minutes['finetuned'])]
    out += ['', '### Training time (minutes, wall clock)', '',
            '| route | minutes |', '|---|---|',
            f'| plain@28, {args.epochs} ep | {fmt(minutes["plain@28"])} |',
            f'| + SAN fine-tuning, {args.finetune_epochs} ep | '
            f'{fmt(minutes["finetuned"])} |',
            f'| = fine-tuned route in total | {fmt(finetune_total)} |',
            f'| SAN from scratch, {args.epochs} ep | {fmt(minutes["scratch"])} |']
    return '\n'.join(out)


def doc_tables(path=RESULTS):
    """The section of docs/training.md: top-1 per size (mean over seeds,
    bold = training size) and the quiet machine's training time of each
    route."""
    with open(path) as f:
        data = json.load(f)
    args, runs = data['accuracy']['args'], data['accuracy']['runs']
    seeds = sorted(runs)

    def mean(name, mode, sizes):
        return np.mean([runs[seed][name]['results'][mode][str(size)]
                        for seed in seeds for size in sizes])

    rows = [(f'plain ResNet-18 trained at 28 only, {args["epochs"]} epochs', 'plain@28',
             'proxy'),
            ('SAN initialised from it, before fine-tuning', 'finetuned', 'initialised proxy'),
            (f'SAN fine-tuned from it, {args["finetune_epochs"]} epochs (proxy)', 'finetuned',
             'proxy'),
            ('SAN fine-tuned, calibrated BN at unseen sizes', 'finetuned', 'calibrated'),
            (f'SAN from scratch, {args["epochs"]} epochs (proxy)', 'scratch', 'proxy'),
            ('SAN from scratch, calibrated BN at unseen sizes', 'scratch', 'calibrated')]
    bold = {size: f'**{size}**' if size in TRAIN_SIZES else str(size) for size in ALL_SIZES}
    out = ['| model | ' + ' | '.join(bold[size] for size in ALL_SIZES)
           + ' | mean of **training sizes** |', '|---|' + '---|' * (len(ALL_SIZES) + 1)]
    for label, name, mode in rows:
        out.append(f'| {label} | ' + ' | '.join(f'{mean(name, mode, [size]):.1f}'
                                                for size in ALL_SIZES)
                   + f' | {mean(name, mode, TRAIN_SIZES):.1f} |')
    timing = data['timing']
    per_iter, minutes = timing['seconds_per_iteration'], timing['minutes']
    per_epoch = args['train_images'] // 128
    total = minutes['plain@28'] + minutes['finetuned']
    out += ['', '| training time (idle 2-core CPU; median s/iteration × iterations) | minutes |',
            '|---|---|',
            f'| plain ResNet-18 at 28, {per_epoch * args["epochs"]} iterations × '
            f'{per_iter["plain@28"]:.3f} s | {minutes["plain@28"]:.2f} |',
            f'| + SAN fine-tuning, {per_epoch * args["finetune_epochs"]} iterations × '
            f'{per_iter["finetuned"]:.3f} s | {minutes["finetuned"]:.2f} |',
            f'| = the fine-tuned route | {total:.2f} ({total / minutes["scratch"]:.2f}× '
            'from scratch) |',
            f'| SAN from scratch, {per_epoch * args["epochs"]} iterations × '
            f'{per_iter["scratch"]:.3f} s | {minutes["scratch"]:.2f} |']
    return '\n'.join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_protocol_args(parser, 'fmnist_finetune')
    parser.add_argument('--finetune-epochs', type=int, default=2)
    parser.add_argument('--timing-only', action='store_true',
                        help='only measure s/iteration of each route (run it '
                        'on an otherwise idle machine) and print the '
                        'training-time table')
    parser.add_argument('--tables', action='store_true',
                        help='only rewrite the section of docs/training.md from '
                        'docs/results/fashion_mnist_finetune.json')
    parser.add_argument('--check', action='store_true',
                        help='with --tables: write nothing; exit 1 if the '
                        'section is out of date')
    args = parser.parse_args()
    if args.tables:
        if not write_section(DOC, DOC_SECTION, DOC_COMMAND, doc_tables(),
                             check=args.check) and args.check:
            sys.exit(1)
        return

    import san_mm  # noqa: F401
    from san_mm.datasets import prepare_fashion_mnist
    prepare_fashion_mnist(osp.join(REPO, 'data', 'fashion_mnist'))
    if args.timing_only:
        text, numbers = timing_table(args)
        os.makedirs(args.work_dir, exist_ok=True)
        with open(osp.join(args.work_dir, 'timing.json'), 'w') as f:
            json.dump(numbers, f, indent=1)
        with open(osp.join(args.work_dir, 'timing.md'), 'w') as f:
            f.write(text + '\n')
        print(text)
        return
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    runs = {}
    for seed in args.seeds:
        runs[seed] = {}
        runs[seed]['plain@28'] = run('plain@28', args, seed)
        runs[seed]['finetuned'] = run(
            'finetuned', args, seed,
            plain_checkpoint=runs[seed]['plain@28']['checkpoint'])
        runs[seed]['scratch'] = run('scratch', args, seed)
        with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
            json.dump(dict(args=vars(args), runs=runs), f, indent=1)
    text = table(runs, args.seeds, args)
    text += (f'\n\nProtocol: {args.train_images} training images, {args.test_images} '
             f'test images, seeds {args.seeds}; total '
             f'{(time.time() - start) / 60:.0f} min on {os.cpu_count()} CPU cores.')
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
