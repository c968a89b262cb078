"""Rewrite a checkpoint that you trust so that it loads with ``weights_only=True``.

san_mm never unpickles checkpoints with ``weights_only=False`` on its own. A training checkpoint
written by plain mmengine (without san_mm imported) needs unsafe globals and is refused; if you know
where the file comes from, convert it once:

    python tools/convert_trusted_checkpoint.py work_dirs/old/epoch_10.pth epoch_10_safe.pth
"""
import argparse

from san_mm.checkpoint import convert_trusted_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint you trust (may run code '
                        'while it is read)')
    parser.add_argument('dst', help='where to write the safe checkpoint')
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = convert_trusted_checkpoint(args.src, args.dst)
    print(f'wrote {args.dst} (keys: {sorted(checkpoint)}); it loads with '
          'weights_only=True')


if __name__ == '__main__':
    main()
