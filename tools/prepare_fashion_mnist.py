"""Extract Fashion-MNIST into data/fashion_mnist (from the Debian package dataset-fashion-mnist).

    python tools/prepare_fashion_mnist.py [--data-root data/fashion_mnist]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from san_mm.datasets.fashion_mnist import prepare_fashion_mnist  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--no-install', action='store_true',
                        help='never call apt-get')
    args = parser.parse_args()
    if prepare_fashion_mnist(args.data_root,
                             install=not args.no_install) is None:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
