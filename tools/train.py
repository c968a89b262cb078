"""Train a model with MMPretrain's runner (san_mm registered).

    python tools/train.py configs/san_resnet50.py [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--compile | --cuda-graph]
        [--cfg-options train_sizes=[224,160,96] ...] [--launcher pytorch]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401  (registers SAN modules, checkpoint policy)
from mmengine.runner import Runner  # noqa: E402
from san_mm.apis import add_common_args, train_config  # noqa: E402
from san_mm.apis.cli import finish_distributed, run_tool  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a SAN / MMPretrain model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a path, from the '
        'latest checkpoint in the work directory')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument(
        '--cuda-graph', action='store_true',
        help="capture the SAN training step in a CUDA graph and replay it "
        '(model.cuda_graph_step=True; one GPU, no compile; works with --amp): '
        'for small networks whose GPU step waits on kernel launches')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = train_config(args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    del runner  # it holds the process group
    finish_distributed()


if __name__ == '__main__':
    run_tool(main)
