"""Classify images at the size that fits a compute or latency budget, from the model's size table.

    python tools/sweep_sizes.py CONFIG CKPT --sizes ... --save-table SIZED.pth     # once
    python tools/infer.py CONFIG SIZED.pth IMAGE [IMAGE|FOLDER ...] --max-mmacs 5
    python tools/infer.py CONFIG SIZED.pth FOLDER --max-latency-ms 2    # table made with --latency
    python tools/infer.py CONFIG SIZED.pth IMAGE --size 20                 # a size of the table
        [--batch-size 16] [--device cpu] [--out predictions.json]

Picks the most accurate size of the table within the budget (equal accuracy: fewer MACs), resizes
with the config's test pipeline at that size, runs its best inference mode, and prints class,
score, size and MMACs per image (san_mm/apis/budgeted_inference.py). Folders are searched
recursively; a progress bar shows while images are classified.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import san_mm  # noqa: E402,F401
from san_mm.apis import (BudgetedInferencer, SizeTableError,  # noqa: E402
                         list_images)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the model config')
    parser.add_argument('checkpoint', help='a checkpoint with a size table '
                        '(tools/sweep_sizes.py --save-table)')
    parser.add_argument('images', nargs='+', help='image files or folders')
    budget = parser.add_argument_group(
        'budget (none: the most accurate size of the table)')
    budget.add_argument('--max-mmacs', type=float,
                        help='most million multiply-accumulates per image')
    budget.add_argument('--max-latency-ms', type=float,
                        help='most milliseconds per batch, as measured with '
                        'sweep_sizes.py --latency')
    budget.add_argument('--size', type=int,
                        help='serve this size of the table instead')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', help='e.g. cpu, cuda:0 (default: '
                        'the available one)')
    parser.add_argument('--out', help='also write the predictions as JSON')
    args = parser.parse_args()
    if args.size is not None and (args.max_mmacs is not None
                                  or args.max_latency_ms is not None):
        parser.error('give --size or a budget (--max-mmacs, '
                     '--max-latency-ms), not both')
    return args


def main():
    args = parse_args()
    try:
        images = list_images(args.images)
        inferencer = BudgetedInferencer(
            args.config, pretrained=args.checkpoint, device=args.device,
            max_macs=None if args.max_mmacs is None else args.max_mmacs * 1e6,
            max_latency_ms=args.max_latency_ms, size=args.size)
    except (SizeTableError, FileNotFoundError) as error:
        sys.exit(f'error: {error}')
    choice, table = inferencer.choice, inferencer.size_table
    budget = ', '.join(
        f'{name} {value:g}' for name, value in (
            ('--max-mmacs', args.max_mmacs),
            ('--max-latency-ms', args.max_latency_ms),
            ('--size', args.size)) if value is not None) or 'no budget'
    print(f"{budget}: size {choice['size']} px, {choice['inference_mode']} "
          f"mode, {choice['macs'] / 1e6:.2f} MMACs"
          + (f", {choice['latency_ms']:.3f} ms" if choice['latency_ms']
             is not None else '')
          + f"; {table['metric']} {choice['top1']:.2f} on "
          f"{table['num_images']} {table['dataset']} {table['split']} images")
    results = inferencer(images, batch_size=args.batch_size)
    print()  # after the progress bar
    print('| image | class | score | size | MMACs |\n|---|---|---|---|---|')
    for image, result in zip(images, results):
        label = result.get('pred_class', result['pred_label'])
        print(f"| {image} | {label} | {result['pred_score']:.4f} | "
              f"{result['size']} | {result['macs'] / 1e6:.2f} |")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump([dict(image=image, **{
                k: v for k, v in result.items() if k != 'pred_scores'},
                pred_scores=[float(s) for s in result['pred_scores']])
                for image, result in zip(images, results)], f, indent=1)


if __name__ == '__main__':
    main()
