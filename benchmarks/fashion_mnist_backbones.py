"""SAN beyond ResNet on Fashion-MNIST: a RegNet and a MobileNetV3, each against the same backbone
trained at its largest and at its smallest size only.

    python benchmarks/fashion_mnist_backbones.py run [--backbones regnet mobilenetv3]
                                                     [--methods san largest smallest] [--seed 0]
    python benchmarks/fashion_mnist_backbones.py tables      # docs/results.md's section

Every run trains on the 50,000 ``train`` images with the backbone's config (the demo's recipe),
then is evaluated at every training size and at three unseen sizes: on the ``val`` split (which
picks SAN's inference mode at each unseen size, and whether a one-size network's BN is better
recalibrated there) and once on the ``test`` split. Runs are skipped once recorded, and appended to
docs/results/fashion_mnist_backbones.json as they finish; an interrupted run resumes from its last
checkpoint (its training wall time summed over sessions).
"""
import argparse
import json
import os.path as osp
import sys
import time

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from fashion_mnist_converged import (read_json, register_clock_hook,  # noqa: E402
                                     write_json)
from generated_sections import write_section  # noqa: E402

RESULTS = osp.join(REPO, 'docs', 'results', 'fashion_mnist_backbones.json')
DOC = osp.join(REPO, 'docs', 'results.md')
SECTION = 'fashion_mnist_backbones'
COMMAND = 'python benchmarks/fashion_mnist_backbones.py tables'
WORK_DIR = osp.join(REPO, 'work_dirs', 'fmnist_backbones')
#: name -> (config, label, unseen sizes: above, between, below the training sizes)
BACKBONES = {
    'regnet': ('configs/fashion_mnist/san_regnet_fmnist.py', 'RegNet (0.53 M)',
               [32, 22, 14]),
    'mobilenetv3': ('configs/fashion_mnist/san_mobilenetv3_fmnist.py',
                    'MobileNetV3-small', [64, 44, 28]),
}
METHODS = ('san', 'largest', 'smallest')
SAN_MODES = ('proxy', 'ideal', 'calibrated', 'data_free')
ONE_SIZE_MODES = ('proxy', 'calibrated')  # as trained; BN recalibrated


def method_cfg(backbone, method, seed, work_dir, extra=None):
    """The run's config: the backbone's SAN config, or the same network at
    one size (no meta network, no distillation: a plain network)."""
    from mmengine.config import Config

    from san_mm.apis.cli import merge_cfg_options
    cfg = Config.fromfile(osp.join(REPO, BACKBONES[backbone][0]))
    options = {'randomness.seed': seed, 'default_hooks.logger.interval': 100}
    options.update(extra or {})
    if method != 'san':
        sizes = cfg.model.backbone.train_sizes
        size = max(sizes) if method == 'largest' else min(sizes)
        options.update({'train_sizes': [size], 'model.distill': None,
                        'model.backbone.use_meta_network': False})
    merge_cfg_options(cfg, options)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{backbone}_{method}_{time.time_ns()}'
    return cfg


def evaluate(cfg, checkpoint, split, modes, sizes):
    """Top-1 ``{mode: {size: value}}`` on the config's ``split`` loader."""
    import copy

    from mmengine.runner import Runner
    top1 = {}
    for mode in modes:
        run = copy.deepcopy(cfg)
        if split == 'val':
            run.test_dataloader = copy.deepcopy(run.val_dataloader)
        run.load_from = checkpoint
        run.test_cfg.test_sizes = list(sizes)
        run.custom_hooks = [dict(type='PerSizeBNHook', inference_mode=mode,
                                 calibration_images=1024)]
        run.work_dir = osp.join(cfg.work_dir, f'{split}_{mode}')
        run.experiment_name = f'{split}_{mode}_{time.time_ns()}'
        metrics = Runner.from_cfg(run).test()
        top1[mode] = {str(s): round(float(metrics[f'accuracy/top1@{s}']), 2)
                      for s in sizes}
    return top1


def train_gmacs(cfg, model_sizes, images, epochs):
    """Forward GMACs of every training image at every size it was trained
    on, summed over the run (each size every iteration here)."""
    from mmpretrain import get_model

    from san_mm.analysis import complexity_per_size
    rows = complexity_per_size(get_model(cfg), model_sizes)
    return round(sum(r['flops'] for r in rows) * images * epochs / 1e9, 1)


def command_run(args):
    import torch
    from mmengine.runner import Runner

    import san_mm  # noqa: F401  (registers the SAN modules)
    register_clock_hook()
    for backbone in args.backbones:
        for method in args.methods:
            data = read_json(args.results, dict(runs=[]))
            key = f'{backbone}/{method}/seed{args.seed}'
            if any(r['key'] == key for r in data['runs']):
                continue
            work_dir = osp.join(args.work_dir, backbone, method,
                                f'seed{args.seed}')
            cfg = method_cfg(backbone, method, args.seed, work_dir,
                             args.cfg_options)
            train_sizes = list(cfg.model.backbone.train_sizes)
            cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
                dict(type='TrainingClockHook', sizes=train_sizes)]
            # An interrupted run resumes; a finished one only loads.
            cfg.resume = osp.isfile(osp.join(work_dir, 'last_checkpoint'))
            runner = Runner.from_cfg(cfg)
            runner.train()
            clock = read_json(osp.join(work_dir, 'training_seconds.json'), {})
            epochs = cfg.train_cfg.max_epochs
            checkpoint = osp.join(work_dir, f'epoch_{epochs}.pth')
            san_sizes = method_cfg(backbone, 'san', 0, work_dir).model.backbone
            sizes = sorted(set(san_sizes.train_sizes) |
                           set(BACKBONES[backbone][2]), reverse=True)
            modes = SAN_MODES if method == 'san' else ONE_SIZE_MODES
            record = dict(
                key=key, backbone=backbone, method=method, seed=args.seed,
                train_sizes=train_sizes, epochs=epochs,
                wall_s=round(clock['seconds']),
                threads=torch.get_num_threads(),
                train_images=len(runner.train_dataloader.dataset),
                val=evaluate(cfg, checkpoint, 'val', modes, sizes),
                test=evaluate(cfg, checkpoint, 'test', modes, sizes))
            record['train_gmacs'] = train_gmacs(
                cfg, train_sizes, record['train_images'], epochs)
            data = read_json(args.results, dict(runs=[]))
            data['runs'] = [r for r in data['runs'] if r['key'] != key]
            data['runs'].append(record)
            write_json(args.results, data)
            print(f'{key}: test {json.dumps(record["test"])}', flush=True)


def best(record, size):
    """(mode, test top-1) at ``size``, the mode chosen on the val split."""
    mode = max(record['val'], key=lambda m: record['val'][m][str(size)])
    return mode, record['test'][mode][str(size)]


def tables(data):
    """Markdown: per backbone, test top-1 at each size of SAN and of the two
    one-size networks, each in the mode that was best on the val split."""
    lines = []
    for backbone, (config, label, unseen) in BACKBONES.items():
        runs = {r['method']: r for r in data['runs']
                if r['backbone'] == backbone}
        if set(runs) != set(METHODS):
            lines += [f'{label}: runs missing ({sorted(set(METHODS) - set(runs))}).', '']
            continue
        sizes = sorted(set(runs['san']['train_sizes']) | set(unseen),
                       reverse=True)
        largest, smallest = max(runs['san']['train_sizes']), min(
            runs['san']['train_sizes'])
        lines += [
            f'**{label}** (`{config}`, seed {runs["san"]["seed"]}, '
            f'{runs["san"]["epochs"]} epochs; test top-1 %, each network in '
            'the mode best on the val split):', '',
            f'| size | SAN | trained at {largest} only | trained at '
            f'{smallest} only |', '|---|---|---|---|']
        for size in sizes:
            cells = []
            for method in METHODS:
                mode, value = best(runs[method], size)
                note = '' if mode == 'proxy' else f' ({mode})'
                cells.append(f'{value:.2f}{note}')
            trained = '' if size in runs['san']['train_sizes'] else ' (unseen)'
            lines.append(f'| {size}{trained} | ' + ' | '.join(cells) + ' |')
        gmacs = ', '.join(f'{m} {runs[m]["train_gmacs"]:.0f}' for m in METHODS)
        lines += ['', f'Training GMACs: {gmacs}.', '']
    return '\n'.join(lines).rstrip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=WORK_DIR)
    parser.add_argument('--results', default=RESULTS)
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='train and evaluate what is missing')
    run.add_argument('--backbones', nargs='+', default=list(BACKBONES),
                     choices=list(BACKBONES))
    run.add_argument('--methods', nargs='+', default=list(METHODS),
                     choices=list(METHODS),
                     help='which runs (e.g. two processes on two cores: '
                     'san in one, largest and smallest in the other)')
    run.add_argument('--seed', type=int, default=0)
    run.add_argument('--cfg-options', nargs='+', action=DictAction,
                     help='overrides for every run (e.g. a smoke run)')
    sub.add_parser('tables', help=f'write the section of {DOC}')
    args = parser.parse_args()
    if args.command == 'run':
        command_run(args)
    else:
        write_section(DOC, SECTION, COMMAND, tables(read_json(args.results, dict(runs=[]))))


if __name__ == '__main__':
    main()
