"""Evaluate a checkpoint at every size of ``test_sizes`` with MMPretrain's runner.

    python tools/test.py configs/san_resnet50.py CKPT --cfg-options test_sizes=[224,192,160]
        [--cfg-options inference_mode=data_free] [--out results.pkl] [--work-dir DIR]
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401  (registers SAN modules, checkpoint policy)
from mmengine.runner import Runner  # noqa: E402
from san_mm.apis import (add_common_args, format_size_table,  # noqa: E402
                         test_config)
from san_mm.apis.cli import finish_distributed, run_tool  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Test a SAN / MMPretrain model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions of every size to '
                        'this pickle file (DumpResults), one file per size')
    parser.add_argument('--metrics-out', help='also write the metrics of '
                        'every size to this JSON file')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = test_config(args)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    del runner  # it holds the process group
    finish_distributed()
    print(format_size_table(metrics))
    if args.metrics_out:
        with open(args.metrics_out, 'w') as f:
            json.dump(metrics, f, indent=1, default=float)


if __name__ == '__main__':
    run_tool(main)
