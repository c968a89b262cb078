"""Evaluate one checkpoint over a range of sizes in every inference mode; print one table.

    python tools/sweep_sizes.py configs/san_resnet18.py CKPT     # 240, 224, 208, ..., 96, 80
    python tools/sweep_sizes.py CONFIG CKPT --sizes 96 112 128 --modes proxy data_free
        [--calibration-images 256] [--out sweep.md] [--split val|test] [--cfg-options ...]
    python tools/sweep_sizes.py CONFIG CKPT --save-table SIZED.pth [--latency [--latency-batch 1]]

Rows: sizes (training sizes marked); columns: modes (proxy, ideal, calibrated, data_free).
Runs on the config's val_dataloader (--split val, the default). --save-table writes a copy of the
checkpoint that holds the accuracy-cost table (top-1 per mode, best mode, MACs, parameters; with
--latency also milliseconds on this machine) in meta['size_table'], with calibrated BN statistics
where calibrated mode wins: tools/infer.py serves it under a budget (san_mm/apis/size_table.py).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401
from san_mm.apis.cli import run_tool  # noqa: E402
from san_mm.apis import (add_common_args, format_mode_table,  # noqa: E402
                         load_config, size_table_markdown, store_size_table,
                         sweep_sizes)
from san_mm.apis.sweep import SWEEP_SPLITS, default_sweep_sizes  # noqa: E402
from san_mm.models.utils import INFERENCE_MODES  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        '--sizes', type=int, nargs='+',
        help="sizes to evaluate (default: the config's training sizes, the "
        'sizes halfway between them and half a step beyond each end)')
    parser.add_argument('--modes', nargs='+', default=list(INFERENCE_MODES),
                        choices=list(INFERENCE_MODES))
    parser.add_argument('--metric', default='accuracy/top1')
    parser.add_argument('--calibration-images', type=int, default=256)
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument(
        '--split', default='val', choices=list(SWEEP_SPLITS),
        help="evaluate on the config's val_dataloader (default) or "
        'test_dataloader; --save-table needs val')
    parser.add_argument(
        '--save-table', metavar='OUT.pth',
        help='write a checkpoint with the size table in its meta (and '
        'calibrated BN where calibrated mode wins), for tools/infer.py')
    parser.add_argument('--latency', action='store_true',
                        help='with --save-table: also time every size on '
                        'this machine (torch.utils.benchmark)')
    parser.add_argument('--latency-batch', type=int, default=1,
                        help='batch size of the latency measurement')
    add_common_args(parser)
    args = parser.parse_args()
    if args.save_table and args.split != 'val':
        parser.error(f'--save-table needs --split val (got --split '
                     f'{args.split}): a size table chooses sizes at serving '
                     'time, so it is measured on validation data, never on '
                     'the test set')
    if args.latency and not args.save_table:
        parser.error('--latency is stored in the size table: add '
                     '--save-table OUT.pth')
    return args


def main():
    args = parse_args()
    cfg = load_config(args)
    if not args.sizes:
        args.sizes = default_sweep_sizes(cfg.model.backbone.train_sizes)
        print(f'sizes: {args.sizes} (--sizes to choose others)')
    if args.save_table:
        table = size_table_markdown(store_size_table(
            cfg, args.checkpoint, args.save_table, args.sizes, args.modes,
            args.calibration_images, metric=args.metric,
            latency_batch=args.latency_batch if args.latency else None))
        print(table)
        print(f'size table written to {args.save_table}; serve it with: '
              f'python tools/infer.py {args.config} {args.save_table} IMAGE '
              '--max-mmacs N')
    else:
        results = sweep_sizes(cfg, args.checkpoint, args.sizes, args.modes,
                              args.calibration_images, split=args.split)
        table = format_mode_table(results, metric=args.metric,
                                  train_sizes=cfg.model.backbone.train_sizes)
        print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')


if __name__ == '__main__':
    run_tool(main)
