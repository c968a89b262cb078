"""Post-hoc BN calibration, done once: store BN statistics for unseen sizes in a new checkpoint.

    python tools/calibrate_bn.py configs/san_resnet18.py CKPT --sizes 208 176 144 112 --out CKPT_CAL
        [--calibration-images 256]
    python tools/test.py configs/san_resnet18.py CKPT_CAL \\
        --cfg-options test_sizes=[208,176,144,112] inference_mode=calibrated    # no recalibration
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401
from san_mm.apis.cli import run_tool  # noqa: E402
from san_mm.apis import add_common_args, calibrate_checkpoint, load_config  # noqa: E402
from san_mm.engine.hooks.per_size_bn_hook import CALIBRATION_VIEWS  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--sizes', type=int, nargs='+', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--calibration-images', type=int, default=256)
    parser.add_argument(
        '--calibration-view', choices=list(CALIBRATION_VIEWS), default='test',
        help='training images through the test pipeline (default) or the '
        'training pipeline (random crops and flips, the reference)')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    sizes = calibrate_checkpoint(cfg, args.checkpoint, args.sizes, args.out,
                                 args.calibration_images,
                                 args.calibration_view)
    print(f'wrote {args.out}: calibrated BN statistics for sizes {sizes}')


if __name__ == '__main__':
    run_tool(main)
