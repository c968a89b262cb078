"""MACs and parameters of a model at each size (mmengine.analysis), as a markdown table.

    python tools/analysis/get_flops.py configs/san_mobilenetv2.py                 # its test_sizes
    python tools/analysis/get_flops.py configs/san_resnet50.py --sizes 224 160 96
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import san_mm  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402
from mmpretrain import get_model  # noqa: E402

from san_mm.analysis import complexity_per_size  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--sizes', type=int, nargs='+')
    parser.add_argument('--in-channels', type=int)
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    sizes = args.sizes or cfg.test_cfg.get('test_sizes', [224])
    model = get_model(cfg)
    rows = complexity_per_size(model, sizes, args.in_channels)
    print('| size | MMACs (conv + linear) | params at this size (M) | '
          'stored params (M) |\n|---|---|---|---|')
    for row in rows:
        print(f"| {row['size']} | {row['flops'] / 1e6:.1f} | "
              f"{row['deployed_params'] / 1e6:.3f} | {row['params'] / 1e6:.3f} |")


if __name__ == '__main__':
    main()
