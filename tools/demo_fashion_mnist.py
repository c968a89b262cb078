"""The project's main job: train a small SAN ResNet-18 on Fashion-MNIST and evaluate it at every size.

    make demo        # or: python tools/demo_fashion_mnist.py [--work-dir DIR] [--epochs N]

1. puts Fashion-MNIST into data/fashion_mnist (Debian package files, else mmpretrain downloads);
2. trains configs/fashion_mnist/san_resnet18_fmnist.py with tools/train.py (progress is printed);
3. tests the best checkpoint with tools/test.py at the training sizes 28/24/20/16/12 and the unseen
   sizes 32/26/22/18/14/10, once per inference mode (proxy and data-free);
4. prints a per-size table (with MACs from mmengine.analysis) and writes an accuracy-vs-size/MACs
   plot, work_dirs/demo_fashion_mnist/accuracy_vs_size.png.
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = osp.join(REPO, 'configs', 'fashion_mnist', 'san_resnet18_fmnist.py')
MODES = ('proxy', 'data_free')


def run(tool, *args):
    cmd = [sys.executable, osp.join(REPO, 'tools', tool), *map(str, args)]
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def best_checkpoint(work_dir):
    best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')))
    if best:
        return best[-1]
    last = osp.join(work_dir, 'last_checkpoint')
    with open(last) as f:
        return f.read().strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir',
                        default=osp.join(REPO, 'work_dirs', 'demo_fashion_mnist'))
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config (3)')
    args = parser.parse_args()

    import san_mm  # noqa: F401
    from mmengine.config import Config
    from mmpretrain import get_model

    from san_mm.analysis import complexity_per_size, plot_accuracy_vs_size
    from san_mm.analysis.plot import sizes_of
    from san_mm.apis import format_mode_table
    from san_mm.datasets import prepare_fashion_mnist

    start = time.time()
    prepare_fashion_mnist(osp.join(REPO, 'data', 'fashion_mnist'))
    options = []
    if args.epochs:
        options = ['--cfg-options', f'train_cfg.max_epochs={args.epochs}',
                   f'param_scheduler.end={args.epochs}',
                   f'param_scheduler.T_max={args.epochs}']
    run('train.py', CONFIG, '--work-dir', args.work_dir, *options)
    checkpoint = best_checkpoint(args.work_dir)

    results = {}
    for mode in MODES:
        out = osp.join(args.work_dir, f'metrics_{mode}.json')
        run('test.py', CONFIG, checkpoint, '--work-dir',
            osp.join(args.work_dir, f'test_{mode}'), '--metrics-out', out,
            '--cfg-options', f'inference_mode={mode}')
        with open(out) as f:
            results[mode] = json.load(f)

    cfg = Config.fromfile(CONFIG)
    model = get_model(CONFIG)
    flops = {row['size']: row['flops'] for row in complexity_per_size(
        model, cfg.test_cfg.test_sizes, in_channels=1)}
    table = format_mode_table(results, train_sizes=cfg.train_sizes, flops=flops)
    plot = plot_accuracy_vs_size(
        {f'SAN ResNet-18, {mode}': sizes_of(m) for mode, m in results.items()},
        osp.join(args.work_dir, 'accuracy_vs_size.png'), flops=flops,
        train_sizes=cfg.train_sizes,
        title='SAN ResNet-18 (width 16) on Fashion-MNIST, top-1 on the test set')
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    print('\nTop-1 (%) on the 10,000 Fashion-MNIST test images, one SAN model:')
    print(table)
    print(f'\nplot: {plot}\ncheckpoint: {checkpoint}\n'
          f'total time: {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    main()
