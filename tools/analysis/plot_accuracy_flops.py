"""Accuracy-vs-MACs plot and table from multi-size test runs (tools/test.py --metrics-out).

    python tools/test.py configs/san_mobilenetv2.py CKPT --metrics-out san.json
    python tools/analysis/plot_accuracy_flops.py configs/san_mobilenetv2.py san.json \\
        --label "SAN MobileNetV2" --reference mutualnet --out san_vs_mutualnet.png

    python tools/sweep_sizes.py CONFIG CKPT --sizes ... --save-table sized.pth
    python tools/analysis/plot_accuracy_flops.py CONFIG sized.pth [--all-modes]   # the stored table

Writes the PNG and prints a markdown table (size, MMACs, top-1 per run [and the reference]).
A checkpoint (.pth) with a size table gives the curve budgeted inference serves (each size at its
best mode; --all-modes adds one curve per mode) and its stored MACs.
--reference mutualnet adds the MutualNet MobileNetV2 numbers the SAN paper compares with.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import san_mm  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402
from mmpretrain import get_model  # noqa: E402

from san_mm.analysis import complexity_per_size, plot_accuracy_vs_size  # noqa: E402
from san_mm.analysis.plot import sizes_of  # noqa: E402
from san_mm.apis.size_table import (read_size_table,  # noqa: E402
                                    size_table_curves)

# Top-1 at 224...96 in steps of 16 (SAN paper's comparison, MobileNetV2).
REFERENCES = {
    'mutualnet': ('MutualNet MobileNetV2 (paper)', dict(zip(
        range(224, 95, -16),
        [73.0, 72.4, 71.9, 71.5, 70.2, 69.9, 67.8, 66.1, 64.3]))),
    'san_paper': ('SAN MobileNetV2 (paper)', dict(zip(
        range(224, 95, -16),
        [72.86, 72.42, 72.22, 71.63, 71.16, 69.80, 69.14, 66.59, 65.07]))),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config of the model (for MACs)')
    parser.add_argument('metrics', nargs='+', help='--metrics-out JSON files, '
                        'or checkpoints with a size table (.pth)')
    parser.add_argument('--all-modes', action='store_true', help='size '
                        'tables: a curve per inference mode, not only the best')
    parser.add_argument('--label', nargs='+', help='one label per file')
    parser.add_argument('--metric', default='accuracy/top1')
    parser.add_argument('--reference', nargs='*', default=[],
                        choices=list(REFERENCES))
    parser.add_argument('--out', default='accuracy_vs_flops.png')
    args = parser.parse_args()
    labels = args.label or [osp.splitext(osp.basename(m))[0]
                            for m in args.metrics]
    if len(labels) != len(args.metrics):
        parser.error(f'--label got {len(labels)} labels for '
                     f'{len(args.metrics)} metrics files; give one label per '
                     'file, in the same order, or leave --label out')
    curves, flops = {}, {}
    for label, path in zip(labels, args.metrics):
        if path.endswith('.pth'):
            table = read_size_table(path)
            curves.update(size_table_curves(table, label, args.all_modes))
            flops.update({row['size']: row['macs'] for row in table['sizes']})
            continue
        with open(path) as f:
            curves[label] = sizes_of(json.load(f), args.metric)
    for key in args.reference:
        name, values = REFERENCES[key]
        curves[name] = values
    cfg = Config.fromfile(args.config)
    sizes = sorted({s for c in curves.values() for s in c}, reverse=True)
    missing = [size for size in sizes if size not in flops]
    if missing:
        flops.update({row['size']: row['flops'] for row in complexity_per_size(
            get_model(cfg), missing)})
    plot_accuracy_vs_size(curves, args.out, flops=flops,
                          train_sizes=cfg.model.backbone.get('train_sizes', ()))
    print('| size | MMACs | ' + ' | '.join(curves) + ' |')
    print('|---|---|' + '---|' * len(curves))
    for size in sizes:
        cells = [f'{curves[c][size]:.2f}' if size in curves[c] else ''
                 for c in curves]
        print(f'| {size} | {flops[size] / 1e6:.1f} | ' + ' | '.join(cells) + ' |')
    print(f'plot: {args.out}')


if __name__ == '__main__':
    main()
