"""Evaluate one checkpoint over a range of sizes in every inference mode; print one table.

    python tools/sweep_sizes.py configs/san_resnet18.py CKPT                 # 64...448, step 32
    python tools/sweep_sizes.py CONFIG CKPT --sizes 96 112 128 --modes proxy data_free
        [--calibration-images 256] [--out sweep.md] [--cfg-options ...]

Rows: sizes (training sizes marked); columns: modes (proxy, ideal, calibrated, data_free).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401
from san_mm.apis import (add_common_args, format_mode_table,  # noqa: E402
                         load_config, sweep_sizes)
from san_mm.models.utils import INFERENCE_MODES  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=list(range(64, 449, 32)))
    parser.add_argument('--modes', nargs='+', default=list(INFERENCE_MODES),
                        choices=list(INFERENCE_MODES))
    parser.add_argument('--metric', default='accuracy/top1')
    parser.add_argument('--calibration-images', type=int, default=256)
    parser.add_argument('--out', help='also write the table to this file')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    results = sweep_sizes(cfg, args.checkpoint, args.sizes, args.modes,
                          args.calibration_images)
    table = format_mode_table(results, metric=args.metric,
                              train_sizes=cfg.model.backbone.train_sizes)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')


if __name__ == '__main__':
    main()
