"""The project's main job: train a SAN ResNet-18 on Fashion-MNIST in minutes and show it at every size.

    make demo        # or: python tools/demo_fashion_mnist.py [--work-dir DIR] [--epochs N]
    python tools/demo_fashion_mnist.py --validation [--cfg-options KEY=VALUE ...]
    python tools/demo_fashion_mnist.py --choices-table [--docs [--check]]   # the runs so far

``--validation`` runs the same recipe the way its choices were made: trained on the 50,000
training images and evaluated on the 10,000 validation images held out from them (never the test
set); ``--cfg-options`` tries a variant (e.g. ``optim_wrapper.optimizer.lr=0.2``).

1. puts Fashion-MNIST into data/fashion_mnist (the Debian package's files; it never downloads);
2. trains configs/fashion_mnist/san_resnet18_fmnist_demo.py with tools/train.py (the 50,000
   training images, no validation: the recipe was chosen beforehand on the 10,000 validation
   images held out from them);
3. calibrates BN once for the unseen sizes 32/26/22/18/14/10 with tools/calibrate_bn.py and
   stores the statistics in a new checkpoint;
4. tests that checkpoint with tools/test.py on the 10,000 test images: every size in proxy mode,
   the unseen sizes also calibrated and data-free (at a training size every mode is the same);
5. prints a per-size table (MACs from mmengine.analysis, the best mode per size marked, the
   smoothness check between training sizes), writes an accuracy-vs-size/MACs plot, the total wall
   time, and what to do next with the model.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = osp.join(REPO, 'configs', 'fashion_mnist', 'san_resnet18_fmnist_demo.py')
TRAIN_SIZES = [28, 24, 20, 16, 12]
UNSEEN_SIZES = [32, 26, 22, 18, 14, 10]
ALL_SIZES = sorted(TRAIN_SIZES + UNSEEN_SIZES, reverse=True)
MODES = ('proxy', 'calibrated', 'data_free')
#: Validation runs of the demo recipe and its variants (how the recipe was chosen).
CHOICES = osp.join(REPO, 'docs', 'results', 'fashion_mnist_demo_choices.json')
#: The table of CHOICES in the training guide, and the command that writes it.
CHOICES_DOC = osp.join(REPO, 'docs', 'training.md')
CHOICES_SECTION = 'fashion_mnist_demo_choices'
CHOICES_COMMAND = 'python tools/demo_fashion_mnist.py --choices-table --docs'
#: An unseen size between two training sizes may be at most this many points below the lower of
#: its two neighbours in its best mode.
SMOOTHNESS_POINTS = 3.0


def run(tool, *args):
    cmd = [sys.executable, osp.join(REPO, 'tools', tool), *map(str, args)]
    print('$', ' '.join(osp.relpath(c, REPO) if c.startswith(REPO) else c
                        for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def rel(path):
    """``path`` relative to the repository (as the printed commands show it,
    run from there)."""
    return osp.relpath(path, REPO)


def write_test_images(work_dir, count=8):
    """A few of the test images as PNG files, ``<work_dir>/images/NN_<class>.png``,
    for the next commands to classify."""
    import cv2

    from san_mm.datasets import FashionMNISTWithVal
    folder = osp.join(work_dir, 'images')
    os.makedirs(folder, exist_ok=True)
    test = FashionMNISTWithVal(osp.join(REPO, 'data', 'fashion_mnist'),
                               split='test', test_mode=True)
    paths = []
    for i in range(count):
        info = test.get_data_info(i)
        name = test.metainfo['classes'][info['gt_label']].lower().replace(' ', '_').replace('/', '_')
        paths.append(osp.join(folder, f'{i:02d}_{name}.png'))
        cv2.imwrite(paths[-1], info['img'])
    return paths


def python():
    """The interpreter the printed commands use: this one where it is the
    repository's own (``make demo``'s ``.venv/bin/python``), else ``python``."""
    inside = not rel(sys.executable).startswith('..')
    return rel(sys.executable) if inside else 'python'


def next_commands(config, checkpoint, work_dir, image):
    """What to do next with the demo's model: (comment, command) pairs, each
    command runnable as printed from the repository root."""
    config, checkpoint, image = rel(config), rel(checkpoint), rel(image)
    sized = rel(osp.join(work_dir, 'sized.pth'))
    py = python()
    return [
        ('classify an image at a chosen size (here the unseen 22 px, calibrated BN) through '
         "mmpretrain's get_model and Inferencer",
         f'{py} -c "import cv2, san_mm; from mmengine import Config; '
         'from mmpretrain import get_model, ImageClassificationInferencer; '
         f"c = Config.fromfile('{config}'); "
         'c.test_dataloader.dataset.pipeline[0].size = 22; '
         "c.model.backbone.inference_mode = 'calibrated'; "
         f"model = get_model(c, pretrained='{checkpoint}'); "
         'print(ImageClassificationInferencer(model)('
         f"cv2.imread('{image}', cv2.IMREAD_GRAYSCALE))[0]['pred_class'])\""),
        ('export the model at one size to the plain ResNet it was made from (then --onnx)',
         f'{py} tools/export.py {config} {checkpoint} --size 22 --inference-mode calibrated '
         f'--out-dir {rel(osp.join(work_dir, "exported_22"))}'),
        ('store the accuracy/MACs table (validation split) and serve under a budget',
         f'{py} tools/sweep_sizes.py {config} {checkpoint} --save-table {sized}'),
        ('', f'{py} tools/infer.py {config} {sized} {rel(osp.dirname(image))} '
         '--max-mmacs 5'),
    ]


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def per_size_table(top1, best, flops):
    """Markdown rows: size, trained, MMACs, each mode (the best one in
    bold), the best mode."""
    lines = ['| size | trained | MMACs | ' + ' | '.join(MODES) + ' | best |',
             '|---|---|---|' + '---|' * (len(MODES) + 1)]
    for size in ALL_SIZES:
        unseen = size not in TRAIN_SIZES
        cells = [f'**{top1[m][size]:.2f}**' if m == best[size]
                 else f'{top1[m][size]:.2f}' for m in MODES]
        lines.append(f'| {size} | {"" if unseen else "yes"} | '
                     f'{flops[size] / 1e6:.2f} | ' + ' | '.join(cells)
                     + f' | {best[size]} |')
    return '\n'.join(lines)


def smoothness(best):
    """(size, its best top-1, the lower neighbour's, gap) for every unseen
    size between two training sizes; ``best`` is {size: top-1 in the best
    mode}."""
    rows = []
    for size in UNSEEN_SIZES:
        larger = [s for s in TRAIN_SIZES if s > size]
        smaller = [s for s in TRAIN_SIZES if s < size]
        if not larger or not smaller:
            continue
        lower = min(best[min(larger)], best[max(smaller)])
        rows.append((size, best[size], lower, lower - best[size]))
    return rows


def summarise(work_dir):
    """Top-1 per mode and size from a demo run's metrics files, the mean over
    the training sizes and the smoothness gaps (plain data)."""
    top1 = {}
    for mode in MODES:
        with open(osp.join(work_dir, f'metrics_{mode}.json')) as f:
            metrics = json.load(f)
        top1[mode] = {int(k.rsplit('@', 1)[1]): float(v)
                      for k, v in metrics.items()
                      if k.startswith('accuracy/top1@') and
                      k.rsplit('@', 1)[1].isdigit()}
    for mode in MODES[1:]:  # training sizes: the same network in every mode
        top1[mode].update({s: top1['proxy'][s] for s in TRAIN_SIZES})
    # The most accurate mode per size; ties go to the first in MODES (at a
    # training size every mode is proxy's network).
    best = {s: max(MODES, key=lambda m: top1[m][s]) for s in ALL_SIZES}
    gaps = smoothness({s: top1[best[s]][s] for s in ALL_SIZES})
    return dict(
        top1=top1, best_mode=best,
        mean_train=sum(top1['proxy'][s] for s in TRAIN_SIZES) / len(TRAIN_SIZES),
        at_28=top1['proxy'][28],
        gaps=[dict(size=s, best=v, lower_neighbour=lower, below=gap)
              for s, v, lower, gap in gaps],
        smooth=all(g <= SMOOTHNESS_POINTS for *_, g in gaps))


def recipe_of(cfg):
    """The training choices the validation runs compared, from a config:
    crop range, epochs, batch size, learning rate, sizes trained per image
    (``all``: every training size; ``N``: N drawn at random; ``sandwich+N``:
    the largest, the smallest and N drawn between) and the distillation
    (``dense`` or ``largest``)."""
    from san_mm.utils import iter_transforms
    sampler = next(iter_transforms(cfg.train_dataloader, 'ResolutionSample'))
    sampled = cfg.model.get('num_sampled_sizes') or 'all'
    if cfg.model.get('sandwich'):
        sampled = f'sandwich+{sampled}'
    return dict(crop=list(sampler['crop_ratio_range']),
                epochs=cfg.train_cfg.max_epochs,
                batch=cfg.train_dataloader.batch_size,
                lr=cfg.optim_wrapper.optimizer.lr,
                sampled_sizes=sampled, kd=cfg.model.distill.mode)


def epoch_options(epochs):
    """``--cfg-options`` for ``--epochs``: the schedule's length, and, as the demo config,
    no validation while training and one checkpoint at the end."""
    return [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs + 1}',
            f'param_scheduler.end={epochs}', f'param_scheduler.T_max={epochs}',
            f'default_hooks.checkpoint.interval={epochs}']


def config_with(options):
    """The demo config as tools/train.py reads it with ``options``
    (``KEY=VALUE`` strings)."""
    from san_mm.apis.cli import config_with_options
    return config_with_options(CONFIG, options)


def record_choice(result, work_dir, options):
    """Add a validation run to CHOICES with the recipe it trained
    (replacing one with the same options)."""
    runs = []
    if osp.isfile(CHOICES):
        with open(CHOICES) as f:
            runs = json.load(f)['validation_runs']
    runs = [r for r in runs if r['options'] != result['options']]
    runs.append(dict(result, recipe=recipe_of(config_with(options)),
                     work_dir=osp.relpath(work_dir, REPO)))
    with open(CHOICES, 'w') as f:
        json.dump(dict(validation_runs=runs), f, indent=1)


def choices_table():
    """Markdown: every recorded validation run of the demo recipe, by the
    recipe it trained; in bold the one the demo config trains now."""
    with open(CHOICES) as f:
        runs = json.load(f)['validation_runs']
    chosen = recipe_of(config_with([]))
    lines = ['| crop | epochs | batch | lr | sizes per image | distillation | '
             'mean top-1, training sizes | 28 px | largest drop between training '
             'sizes | smooth | minutes |', '|---' * 11 + '|']
    for r in runs:
        recipe = r['recipe']
        drop = max(r['gaps'], key=lambda g: g['below'])
        cells = [f"({recipe['crop'][0]:g}, {recipe['crop'][1]:g})",
                 recipe['epochs'], recipe['batch'], f"{recipe['lr']:g}",
                 recipe['sampled_sizes'], recipe['kd'], f"{r['mean_train']:.2f}",
                 f"{r['at_28']:.2f}"]
        if recipe == chosen:
            cells = [f'**{cell}**' for cell in cells]
        cells += [f"{-drop['below']:+.2f} at {drop['size']} px",
                  'yes' if r['smooth'] else 'no',
                  f"{r['wall_minutes']:.1f}"]
        lines.append('| ' + ' | '.join(map(str, cells)) + ' |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG,
                        help='the recipe to train (default: the demo\'s)')
    parser.add_argument('--work-dir',
                        default=osp.join(REPO, 'work_dirs', 'demo_fashion_mnist'))
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config\'s epochs (a shorter demo)')
    parser.add_argument('--validation', action='store_true',
                        help='train on the training split, evaluate on the '
                        'validation split (how the recipe was chosen)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='config overrides for every step (a variant)')
    parser.add_argument('--choices-table', action='store_true',
                        help='print the recorded validation runs and exit')
    parser.add_argument('--docs', action='store_true',
                        help='with --choices-table: rewrite their table in '
                        'docs/training.md instead')
    parser.add_argument('--readme', action='store_true',
                        help='deprecated name of --docs (the table moved '
                        'from the README to docs/training.md)')
    parser.add_argument('--check', action='store_true',
                        help='with --choices-table --docs: write nothing; '
                        'exit 1 if the table is out of date')
    args = parser.parse_args()
    if args.readme:
        print('--readme is deprecated: the table lives in docs/training.md '
              'now; use --docs', file=sys.stderr)
    if args.choices_table:
        table = choices_table()
        if not (args.docs or args.readme):
            print(table)
            return
        sys.path.insert(0, osp.join(REPO, 'benchmarks'))
        from generated_sections import write_section
        if not write_section(CHOICES_DOC, CHOICES_SECTION, CHOICES_COMMAND,
                             table, check=args.check) and args.check:
            sys.exit(1)
        return
    start = time.time()

    import san_mm  # noqa: F401
    from mmengine.config import Config
    from mmpretrain import get_model

    from san_mm.analysis import complexity_per_size, plot_accuracy_vs_size
    from san_mm.datasets import prepare_fashion_mnist

    prepare_fashion_mnist(osp.join(REPO, 'data', 'fashion_mnist'))
    options = list(args.cfg_options)
    if args.epochs:
        options += epoch_options(args.epochs)
    evaluated = 'test'
    if args.validation:
        evaluated = 'validation'
        options += ['train_dataloader.dataset.split=train',
                    'test_dataloader.dataset.split=val']
    options = ['--cfg-options', *options] if options else []
    run('train.py', args.config, '--work-dir', args.work_dir, *options)
    trained = last_checkpoint(args.work_dir)
    calibrated = osp.join(args.work_dir, 'san_resnet18_fmnist_calibrated.pth')
    run('calibrate_bn.py', args.config, trained, '--sizes', *UNSEEN_SIZES,
        '--calibration-images', 2048, '--out', calibrated, *options)

    for mode in MODES:
        sizes = ALL_SIZES if mode == 'proxy' else UNSEEN_SIZES
        run('test.py', args.config, calibrated, '--work-dir',
            osp.join(args.work_dir, f'test_{mode}'), '--metrics-out',
            osp.join(args.work_dir, f'metrics_{mode}.json'),
            '--cfg-options', f'inference_mode={mode}',
            'test_sizes=[' + ','.join(map(str, sizes)) + ']', *options[1:])
    result = summarise(args.work_dir)
    top1 = result['top1']

    model = get_model(Config.fromfile(args.config))
    flops = {row['size']: row['flops'] for row in complexity_per_size(
        model, ALL_SIZES)}
    table = per_size_table(top1, result['best_mode'], flops)
    plot = plot_accuracy_vs_size(
        {f'SAN ResNet-18, {mode}': top1[mode] for mode in MODES},
        osp.join(args.work_dir, 'accuracy_vs_size.png'), flops=flops,
        train_sizes=TRAIN_SIZES,
        title='One SAN ResNet-18 (width 16) on Fashion-MNIST, top-1 on the '
        f'{evaluated} set')
    mean_train, gaps = result['mean_train'], result['gaps']
    minutes = (time.time() - start) / 60
    result.update(evaluated=evaluated, options=options[1:],
                  wall_minutes=round(minutes, 2))
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    if args.validation:
        record_choice(result, args.work_dir, options[1:])
    summary = [
        '', f'Top-1 (%) on the 10,000 Fashion-MNIST {evaluated} images, one SAN '
        'model (bold: the best mode at an unseen size):', '', table, '',
        f'mean over the training sizes: {mean_train:.2f}; at 28 px: '
        f'{result["at_28"]:.2f}',
        'between training sizes (best mode vs the lower neighbour): ' + ', '.join(
            f"{g['size']} px {g['best']:.2f} vs {g['lower_neighbour']:.2f} "
            f"({-g['below']:+.2f})" for g in gaps),
        'smooth: ' + ('yes' if result['smooth'] else 'NO')
        + f' (no unseen size more than {SMOOTHNESS_POINTS:g} points below its lower '
        'neighbour)',
        f'total wall time: {minutes:.1f} min', '']
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(summary) + '\n')
    images = write_test_images(args.work_dir)
    summary += [f'plot: {rel(plot)}',
                f'checkpoint (BN calibrated for {UNSEEN_SIZES}): {rel(calibrated)}',
                f'test images to classify: {rel(osp.dirname(images[0]))}', '', 'Next:']
    for comment, command in next_commands(args.config, calibrated, args.work_dir,
                                          images[0]):
        summary += ([f'  # {comment}:'] if comment else []) + [f'  {command}']
    print('\n'.join(summary))


if __name__ == '__main__':
    main()
