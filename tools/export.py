"""Export a SAN checkpoint at one input size to the plain backbone it was made from.

    python tools/export.py configs/san_resnet18.py CKPT --size 160 --out-dir exported/r18_160
    python tools/export.py CONFIG CKPT --size 176 --inference-mode data_free --out-dir DIR [--onnx]

Writes DIR/config.py and DIR/model.pth (state_dict + meta), which load with mmpretrain (and
custom_imports where another package registers the backbone):
    python -c "from mmpretrain import get_model; m = get_model('DIR/config.py', pretrained='DIR/model.pth')"
and checks that the exported model's logits equal SAN's at that size.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401
from san_mm.apis import add_common_args, load_config  # noqa: E402
from san_mm.apis.export import export_model  # noqa: E402
from san_mm.models.utils import INFERENCE_MODES  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--size', type=int, required=True)
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--inference-mode', choices=list(INFERENCE_MODES),
                        help='for a size that was not trained on (default: '
                        "the config's)")
    parser.add_argument('--onnx', action='store_true',
                        help='also write model.onnx (needs the onnx package)')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    result = export_model(cfg, args.checkpoint, args.size, args.out_dir,
                          args.inference_mode, args.onnx)
    for key, value in result.items():
        print(f'{key}: {value}')


if __name__ == '__main__':
    main()
