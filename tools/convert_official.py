"""Convert a checkpoint of the reference SAN implementation (d-li14/SAN) to san_mm.

    python tools/convert_official.py resnet18_san.pth.tar san_resnet18_official.pth --arch resnet18
    python tools/test.py configs/san_resnet18.py san_resnet18_official.pth      # [0, 1] inputs, 224...96

--arch: resnet18/34/50/101/152 or mobilenetv2. The converted checkpoint is loaded strictly into
--config (default: configs/san_<arch>.py, or MetaResNet-<depth> with its settings) before saving.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

import san_mm  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmpretrain import get_model  # noqa: E402

from san_mm.apis.convert_official import ARCHS, load_official  # noqa: E402
from san_mm.checkpoint import load_from_local_weights_only  # noqa: E402


def default_config(arch: str) -> Config:
    path = osp.join(REPO, 'configs', f'san_{arch}.py')
    if osp.isfile(path):
        return Config.fromfile(path)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'san_resnet50.py'))
    cfg.model.backbone.depth = int(arch[len('resnet'):])
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--arch', required=True, choices=list(ARCHS))
    parser.add_argument('--config', help='config of the target model')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config) if args.config else default_config(
        args.arch)
    # Refuses unsafe or unreadable files with a message naming the next step.
    checkpoint = load_from_local_weights_only(args.src, map_location='cpu')
    state_dict = checkpoint.get('state_dict', checkpoint)
    model = get_model(cfg)
    load_official(model, state_dict, args.arch)
    meta = dict(converted_from=osp.basename(args.src), arch=args.arch)
    for key in ('epoch', 'best_prec1'):
        if key in checkpoint:
            value = checkpoint[key]
            meta[key] = value.item() if torch.is_tensor(value) else value
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, args.dst)
    print(f'wrote {args.dst} ({args.arch}, {len(model.backbone.train_sizes)} '
          f'sizes {list(model.backbone.train_sizes)})')


if __name__ == '__main__':
    main()
