"""Converged Fashion-MNIST study: does one SAN model match K separately trained networks?

    python benchmarks/fashion_mnist_converged.py tune METHOD [--set KEY=VALUE ...] [--seed 0]
    python benchmarks/fashion_mnist_converged.py final [--methods ...] [--seeds 0 1] [--workers 2]
    python benchmarks/fashion_mnist_converged.py status
    python benchmarks/fashion_mnist_converged.py tables [--check]  # .md, plots, README/docs sections

Data: Fashion-MNIST through ``FashionMNISTWithVal``: 50,000 training images, 10,000 validation
images held out from the official training set, the 10,000 official test images. Network: the
ResNet-18 of configs/fashion_mnist (width 16, 3x3 stride-2 stem, no max-pool). Training sizes
28/24/20/16/12, unseen sizes 32/26/22/18/14/10.

``tune`` trains one run on the training split with validation after every epoch and records
its validation curve (never the test set) under ``tuning`` in the results file. ``final``
trains every method of :data:`METHODS` with :data:`PROTOCOL` (the values the tuning runs chose,
each with the validation numbers behind it in ``CHOICES``), then reads the test set once per
run: SAN-type models at every size in every inference mode, baselines at every size as trained
and with BN recalibrated at the test size. A run whose recipe equals a finished tuning run's is
not trained again (same work directory), only tested.

Runs are restartable: finished runs are skipped, interrupted ones resume losslessly
(``ResumableEpochBasedTrainLoop`` + mid-epoch checkpoints), every finished run is appended to
docs/results/fashion_mnist_converged.json at once, and the remaining time is estimated from the
measured seconds per iteration. ``--workers N`` runs N runs side by side, each with
``cpu_count // N`` threads (two processes at 2 threads each on 2 cores crawl).
"""
import argparse
import contextlib
import copy
import fcntl
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from generated_sections import write_section  # noqa: E402

CONFIGS = osp.join(REPO, 'configs', 'fashion_mnist')
RESULTS = osp.join(REPO, 'docs', 'results', 'fashion_mnist_converged.json')
WORK_DIR = osp.join(REPO, 'work_dirs', 'fmnist_converged')
TRAIN_SIZES = [28, 24, 20, 16, 12]
UNSEEN_SIZES = [32, 26, 22, 18, 14, 10]
ALL_SIZES = sorted(TRAIN_SIZES + UNSEEN_SIZES, reverse=True)
SAN_MODES = ('proxy', 'ideal', 'calibrated', 'data_free')
BASELINE_MODES = ('as_trained', 'calibrated')

#: The recipe of the final runs. Every value that is a choice was made on the validation split
#: (CHOICES says by which tuning runs); the rest is the landed configuration.
PROTOCOL = dict(
    train_images=50000,
    val_images=10000,
    test_images=10000,
    batch_size=128,
    optimizer='SGD, momentum 0.9',
    schedule='cosine to 0, per iteration, after the linear warm-up',
    epochs=30,
    lr=0.1,
    warmup_epochs=0,
    weight_decay=1e-4,
    crop_ratio_range=[0.8, 1.0],
    loss_reduction='mean',
    kd_temperature=1.0,
    kd_mode='dense',
    kd_weight=1.0,
    label_smoothing=0.0,
    sampling='all',
    calibration_images=1024,
    checkpoint='last epoch (no selection on the test set)',
)

#: Why each value of PROTOCOL is what it is: the tuning runs' validation top-1 (baseline@28, seed 0,
#: 50,000 training images, last epoch; the full records are under "tuning" in the results file).
CHOICES = [
    dict(what='crop_ratio_range', value='[0.8, 1.0]',
         evidence='baseline@28, 30 epochs: 93.60 with (0.8, 1) against 92.29 with the landed '
                  '(0.5, 1)'),
    dict(what='weight_decay', value='1e-4',
         evidence='baseline@28, 30 epochs, crop (0.8, 1): 93.60 with 1e-4, 93.57 with 5e-4 (no '
                  'difference: the landed value stays)'),
    dict(what='epochs', value='30',
         evidence='baseline@28, crop (0.8, 1), cosine over the whole run: 92.83 after 15 epochs, '
                  '93.60 after 30, 93.69 after 45 (converged: +0.09 for 50 % more training)'),
    dict(what='kd_temperature', value='1',
         evidence='SAN, 30 epochs, crop (0.8, 1), mean reduction, seed 0: validation top-1 mean '
                  'over 28/24/20/16/12 91.68 with T = 1 (92.87 at 28), 91.27 with T = 2 (92.50 '
                  'at 28); one seed each'),
    dict(what='loss_reduction', value='mean over the sizes',
         evidence='the landed value, confirmed on validation: SAN seed 0, 30 epochs, T = 1, '
                  'mean validation top-1 over 28/24/20/16/12 91.68 with the mean over sizes, '
                  "89.45 with the reference's sum (the san_sum_loss run; it trains at lr 0.1 "
                  'without warm-up, no divergence, so no other learning rate was needed)'),
    dict(what='learning rate, warm-up', value='0.1, none',
         evidence='not tuned: the landed value (the reference recipe); the baseline at 28 '
                  'converges with it (see epochs)'),
]

#: Recipe keys that change what a method trains (others do not make a new run).
SCHEDULE_KEYS = ('epochs', 'lr', 'warmup_epochs', 'weight_decay', 'crop_ratio_range',
                 'batch_size', 'label_smoothing')
SAN_KEYS = SCHEDULE_KEYS + ('loss_reduction', 'kd_temperature', 'kd_mode', 'kd_weight',
                            'sampling')
#: Keys added after the first runs: their run folders and keys name them only when they differ
#: from PROTOCOL, so the earlier runs keep theirs.
LATER_KEYS = ('label_smoothing', 'kd_mode', 'kd_weight', 'sampling')
#: Which sizes a SAN step trains (``sampling``): every size; the largest plus one drawn from the
#: others; the sandwich rule, the largest and the smallest plus one (two) drawn between them.
SAMPLINGS = {'all': {}, 'largest+1': {'model.num_sampled_sizes': 1},
             'sandwich+1': {'model.num_sampled_sizes': 1, 'model.sandwich': True},
             'sandwich+2': {'model.num_sampled_sizes': 2, 'model.sandwich': True}}

#: method -> (config file, model overrides, recipe keys that matter)
METHODS = {f'baseline@{s}': ('resnet18_fmnist_single_size.py', dict(train_sizes=[s]),
                             SCHEDULE_KEYS) for s in TRAIN_SIZES}
METHODS.update({
    'san': ('san_resnet18_fmnist.py', {}, SAN_KEYS),
    'san_kd_largest': ('san_resnet18_fmnist.py', {'model.distill.mode': 'largest'}, SAN_KEYS),
    'san_no_kd': ('san_resnet18_fmnist_no_kd.py', {},
                  tuple(k for k in SAN_KEYS if k != 'kd_temperature')),
    'no_meta': ('san_resnet18_fmnist_no_meta.py', {}, SAN_KEYS),
    'san_sum_loss': ('san_resnet18_fmnist.py', {}, SAN_KEYS),
})
#: Recipe changes of a method against PROTOCOL (the reference's summed loss; its learning
#: rate / warm-up, if the sum needs others to train, go here too).
METHOD_RECIPES = {'san_sum_loss': dict(loss_reduction='sum')}
FINAL_SEEDS = {name: (0, 1, 2) if name.startswith('baseline') else (0, 1) if name == 'san'
               else (0, ) for name in METHODS}


def is_baseline(method):
    return method.startswith('baseline@')


def method_sizes(method):
    return [int(method.split('@')[1])] if is_baseline(method) else TRAIN_SIZES


# ------------------------------------------------------------------ recipes and run folders
def recipe_for(method, changes=None):
    """The full recipe of ``method``: PROTOCOL + the method's own changes + ``changes``."""
    recipe = {k: PROTOCOL[k] for k in METHODS[method][2]}
    recipe.update(METHOD_RECIPES.get(method, {}))
    recipe.update(changes or {})
    return {k: recipe[k] for k in METHODS[method][2]}


def slug(recipe):
    short = dict(epochs='e', lr='lr', warmup_epochs='wu', weight_decay='wd',
                 crop_ratio_range='crop', batch_size='bs', loss_reduction='red',
                 kd_temperature='T', label_smoothing='ls', kd_mode='kd', kd_weight='kdw',
                 sampling='samp')
    parts = []
    for key, value in recipe.items():
        if key in LATER_KEYS and value == PROTOCOL[key]:
            continue
        if isinstance(value, (list, tuple)):
            value = '-'.join(f'{v:g}' for v in value)
        elif isinstance(value, float):
            value = f'{value:g}'
        parts.append(f'{short[key]}{value}')
    return '_'.join(parts)


def run_dir(root, method, recipe, seed):
    return osp.join(root, method.replace('@', '_'), slug(recipe), f'seed{seed}')


def run_key(method, recipe, seed):
    return f'{method}/{slug(recipe)}/seed{seed}'


# ------------------------------------------------------------------------------ configs
def build_cfg(method, recipe, seed, work_dir):
    from mmengine.config import Config

    from san_mm.utils import apply_overrides
    from san_mm.utils.config_utils import iter_transforms
    config, overrides, _ = METHODS[method]
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    options = dict(overrides)
    epochs, warmup = recipe['epochs'], recipe['warmup_epochs']
    options.update({
        'train_dataloader.dataset.indices': None,
        'train_dataloader.batch_size': recipe['batch_size'],
        'optim_wrapper.optimizer.lr': recipe['lr'],
        'optim_wrapper.optimizer.weight_decay': recipe['weight_decay'],
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1,
        'randomness.seed': seed,
        'default_hooks.logger.interval': 100,
    })
    if recipe.get('label_smoothing'):
        options['model.head.loss'] = dict(type='LabelSmoothLoss', loss_weight=1.0,
                                          label_smooth_val=recipe['label_smoothing'])
    if not is_baseline(method):
        options['model.loss_reduction'] = recipe['loss_reduction']
        if 'kd_temperature' in recipe:
            options['model.distill.temperature'] = recipe['kd_temperature']
            if recipe['kd_mode'] != 'dense':
                options['model.distill.mode'] = recipe['kd_mode']
            options['model.distill.loss_weight'] = recipe['kd_weight']
        options.update(SAMPLINGS[recipe['sampling']])
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)
    for transform in iter_transforms(cfg.train_dataloader, 'ResolutionSample'):
        transform['crop_ratio_range'] = tuple(recipe['crop_ratio_range'])
    cosine = dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup, end=epochs,
                  T_max=epochs - warmup, convert_to_iter_based=True)
    cfg.param_scheduler = [cosine] if not warmup else [
        dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup,
             convert_to_iter_based=True), cosine]
    cfg.val_cfg.test_sizes = method_sizes(method)
    # The last epoch is the model; checkpoints are for resuming.
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, max_keep_ckpts=1)
    cfg.custom_hooks = [dict(type='PerSizeBNHook'),
                        dict(type='LosslessResumeHook', interval=100),
                        dict(type='TrainingClockHook', sizes=method_sizes(method))]
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{osp.basename(work_dir)}_{time.time_ns()}'
    return cfg


def register_clock_hook():
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(force=True)
    class TrainingClockHook(Hook):
        """Accumulates training wall time over interrupted and resumed
        sessions, and the images trained at each size (from the per-size
        loss keys of every iteration; kept in every checkpoint, so a resumed
        run counts what its checkpoint had trained), in
        ``<work_dir>/training_seconds.json``."""

        def __init__(self, sizes=()):
            self.images = {str(size): 0 for size in sizes}

        def before_train(self, runner):
            self.path = osp.join(runner.work_dir, 'training_seconds.json')
            self.previous = read_json(self.path, {}).get('seconds', 0.0)
            self.start = time.time()

        def after_load_checkpoint(self, runner, checkpoint):
            self.images.update((checkpoint.get('meta') or {}).get('trained_images', {}))

        def before_save_checkpoint(self, runner, checkpoint):
            checkpoint.setdefault('meta', {})['trained_images'] = dict(self.images)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            count = len(data_batch['data_samples'])
            for key in outputs or {}:
                if key.startswith('loss_ce@'):
                    size = key.split('@')[1]
                    self.images[size] = self.images.get(size, 0) + count

        def after_train_epoch(self, runner):
            write_json(self.path, dict(seconds=self.previous + time.time() - self.start,
                                       epoch=runner.epoch, iter=runner.iter,
                                       trained_images=dict(self.images)))


#: Forward MACs of one image at each size (mmengine.analysis: convolutions and linear layers),
#: filled on first use from the model the configs build (the baselines' is the same network).
_MACS = {}


def macs_per_size():
    if not _MACS:
        from mmengine.config import Config
        from mmpretrain import get_model

        from san_mm.analysis import complexity_per_size
        model = get_model(Config.fromfile(osp.join(CONFIGS, 'san_resnet18_fmnist.py')))
        _MACS.update({r['size']: r['flops'] for r in complexity_per_size(model, TRAIN_SIZES)})
    return _MACS


def train_gmacs(run, images=None):
    """Training compute of a run: the forward MACs of every image at every size it was trained
    on, summed over the run, in GMACs. ``images`` ({size: images trained}) is what the run
    counted; without it (runs before counting), every image at each of the method's sizes in
    every epoch, which is what those recipes trained."""
    if images is None:
        count = run['recipe']['epochs'] * PROTOCOL['train_images']
        images = {str(size): count for size in method_sizes(run['method'])}
    macs = macs_per_size()
    return round(sum(int(n) * macs[int(size)] for size, n in images.items()) / 1e9, 1)


# --------------------------------------------------------------------------- small helpers
def read_json(path, default):
    if not osp.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def write_json(path, data):
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked_results():
    """Read-modify-write the results file under an exclusive lock (workers
    append concurrently)."""
    path = RESULTS
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_json(path, {})
        data.setdefault('protocol', {})
        data.setdefault('runs', [])
        data.setdefault('tuning', [])
        yield data
        write_json(path, data)


def claim(work_dir):
    """Take ``work_dir`` for this process; False if a live process has it."""
    os.makedirs(work_dir, exist_ok=True)
    owner = osp.join(work_dir, 'owner.pid')
    try:
        fd = os.open(owner, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            with open(owner) as f:
                pid = int(f.read().strip() or 0)
            os.kill(pid, 0)
            return pid == os.getpid()
        except (ProcessLookupError, ValueError):
            os.remove(owner)  # its process is gone
            return claim(work_dir)
    with os.fdopen(fd, 'w') as f:
        f.write(str(os.getpid()))
    return True


def release(work_dir):
    with contextlib.suppress(FileNotFoundError):
        os.remove(osp.join(work_dir, 'owner.pid'))


def val_curve(work_dir, method):
    """{epoch: {size: val top-1}} from every session's scalars.json (a
    resumed session's records replace the interrupted one's)."""
    curve = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'accuracy/top1@' + str(method_sizes(method)[0]) in record:
                    curve[int(record['step'])] = {
                        str(s): record[f'accuracy/top1@{s}'] for s in method_sizes(method)}
    return dict(sorted(curve.items()))


def mean_val(values):
    return float(np.mean(list(values.values())))


# -------------------------------------------------------------------------- train and test
def train(method, recipe, seed, root):
    """Train (or resume, or skip when finished) one run; returns its folder
    and its clock (training seconds, images trained per size)."""
    from mmengine.runner import Runner
    work_dir = run_dir(root, method, recipe, seed)
    last = osp.join(work_dir, f'epoch_{recipe["epochs"]}.pth')
    clock = osp.join(work_dir, 'training_seconds.json')
    if not osp.isfile(last) or read_json(clock, {}).get('epoch') != recipe['epochs']:
        cfg = build_cfg(method, recipe, seed, work_dir)
        if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
            cfg.resume = True
            print(f'[{method} seed {seed}] resuming in {work_dir}', flush=True)
        Runner.from_cfg(cfg).train()
    return work_dir, read_json(clock, {})


def compute_fields(run, clock):
    """What a run's record says about its training compute."""
    images = clock.get('trained_images') or None
    return dict(wall_s=clock.get('seconds'), threads=_threads(), trained_images=images,
                train_gmacs=train_gmacs(run, images))


def test(method, recipe, seed, work_dir, split='test', sizes=ALL_SIZES):
    """Top-1 on ``split`` at ``sizes``, {mode: {size: top-1}}. The test split
    is read once per run; the validation split is what picks a SAN model's
    inference mode per unseen size."""
    from mmengine.runner import Runner
    modes = BASELINE_MODES if is_baseline(method) else SAN_MODES
    top1 = {}
    for mode in modes:
        cfg = build_cfg(method, recipe, seed, work_dir)
        cfg.load_from = osp.join(work_dir, f'epoch_{recipe["epochs"]}.pth')
        cfg.test_cfg.test_sizes = list(sizes)
        if split == 'val':
            cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
        cfg.test_dataloader.dataset.pop('indices', None)
        cfg.custom_hooks = [dict(
            type='PerSizeBNHook', calibration_images=PROTOCOL['calibration_images'],
            inference_mode='proxy' if mode == 'as_trained' else mode)]
        cfg.work_dir = osp.join(work_dir, f'{split}_{mode}')
        cfg.experiment_name = f'{split}_{mode}_{time.time_ns()}'
        metrics = Runner.from_cfg(cfg).test()
        top1[mode] = {str(s): round(float(metrics[f'accuracy/top1@{s}']), 2)
                      for s in sizes}
    return top1


# -------------------------------------------------------------------------- time estimate
DEFAULT_SECONDS_PER_ITER = {'san': 0.25, 'baseline@28': 0.07}


def seconds_per_iter(method, data):
    measured = [r['wall_s'] / r['iterations'] for r in data.get('runs', []) + data.get(
        'tuning', []) if r['method'] == method and r.get('wall_s') and r.get('iterations')]
    if measured:
        return float(np.median(measured))
    if is_baseline(method):
        size = int(method.split('@')[1])
        return 0.01 + DEFAULT_SECONDS_PER_ITER['baseline@28'] * (size / 28) ** 2
    return DEFAULT_SECONDS_PER_ITER['san']


def iterations(recipe):
    return recipe['epochs'] * -(-PROTOCOL['train_images'] // recipe['batch_size'])


def remaining_estimate(todo, data, root):
    """Seconds left for ``todo`` [(method, recipe, seed)], from measured speeds
    and each run's progress."""
    total = 0.0
    for method, recipe, seed in todo:
        done = read_json(osp.join(run_dir(root, method, recipe, seed),
                                  'training_seconds.json'), {}).get('iter', 0)
        total += (iterations(recipe) - done) * seconds_per_iter(method, data)
    return total


# ------------------------------------------------------------------------------ commands
def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def changes_of(items, method):
    """``--set KEY=VALUE`` items as recipe changes of ``method`` (checked)."""
    changes = {k: parse_value(v) for k, v in
               (item.split('=', 1) for item in items or [])}
    unknown = set(changes) - set(METHODS[method][2])
    if unknown:
        raise SystemExit(f'--set {sorted(unknown)}: not a recipe key of {method}; '
                         f'expected some of {list(METHODS[method][2])}')
    if changes.get('sampling', 'all') not in SAMPLINGS:
        raise SystemExit(f"--set sampling={changes['sampling']!r}: expected one of "
                         f'{list(SAMPLINGS)}')
    return changes


def command_tune(args):
    import san_mm  # noqa: F401
    register_clock_hook()
    recipe = recipe_for(args.method, changes_of(args.set, args.method))
    key = run_key(args.method, recipe, args.seed)
    if any(r['key'] == key for r in read_json(RESULTS, {}).get('tuning', [])):
        print(f'{key}: already recorded')
        return
    work_dir = run_dir(args.work_dir, args.method, recipe, args.seed)
    if not claim(work_dir):
        print(f'{key}: another process is running it')
        return
    try:
        work_dir, clock = train(args.method, recipe, args.seed, args.work_dir)
        curve = val_curve(work_dir, args.method)
        record = dict(key=key, method=args.method, seed=args.seed, recipe=recipe,
                      iterations=iterations(recipe), val_top1_by_epoch=curve,
                      val_top1_last_mean=round(mean_val(curve[max(curve)]), 2))
        record.update(compute_fields(record, clock))
        with locked_results() as data:
            data['tuning'] = [r for r in data['tuning'] if r['key'] != key] + [record]
        print(f'{key}: validation top-1 (mean over its sizes) by epoch: ' + ', '.join(
            f'{e}: {mean_val(v):.2f}' for e, v in curve.items()), flush=True)
    finally:
        release(work_dir)


def _threads():
    import torch
    return torch.get_num_threads()


def final_todo(args, data):
    done = {r['key'] for r in data.get('runs', [])}
    todo = []
    for method in args.methods:
        for seed in (args.seeds or FINAL_SEEDS[method]):
            recipe = recipe_for(method, changes_of(args.set, method))
            if run_key(method, recipe, seed) not in done:
                todo.append((method, recipe, seed))
    return todo


def command_final(args):
    if args.workers > 1:
        threads = max(1, (os.cpu_count() or 2) // args.workers)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, osp.abspath(__file__), '--work-dir', args.work_dir,
               '--results', RESULTS, 'final', '--workers', '1', '--methods', *args.methods]
        if args.seeds:
            cmd += ['--seeds', *map(str, args.seeds)]
        if args.set:
            cmd += ['--set', *args.set]
        workers = []
        for i in range(args.workers):
            workers.append(subprocess.Popen(cmd, env=env))
            time.sleep(20)  # let the first one claim its run
        codes = [w.wait() for w in workers]
        raise SystemExit(max(codes))

    import san_mm  # noqa: F401
    register_clock_hook()
    start = time.time()
    while True:
        data = read_json(RESULTS, {})
        todo = final_todo(args, data)
        print(f'final: {len(todo)} runs left, about '
              f'{remaining_estimate(todo, data, args.work_dir) / 60:.0f} min of training '
              f'(one process; elapsed here {(time.time() - start) / 60:.0f} min)', flush=True)
        for method, recipe, seed in todo:
            work_dir = run_dir(args.work_dir, method, recipe, seed)
            if claim(work_dir):
                break
        else:
            return
        key = run_key(method, recipe, seed)
        try:
            work_dir, clock = train(method, recipe, seed, args.work_dir)
            curve = val_curve(work_dir, method)
            top1 = test(method, recipe, seed, work_dir)
            record = dict(key=key, method=method, seed=seed, recipe=recipe,
                          iterations=iterations(recipe), top1=top1, val_top1_by_epoch=curve)
            record.update(compute_fields(record, clock))
            if not is_baseline(method):
                # Which mode to use at each unseen size is chosen on these.
                record['val_top1'] = test(method, recipe, seed, work_dir, 'val',
                                          UNSEEN_SIZES)
            with locked_results() as results:
                results['protocol'] = dict(PROTOCOL, choices=CHOICES)
                results['runs'] = [r for r in results['runs'] if r['key'] != key] + [record]
            print(f'{key}: test top-1 {json.dumps(top1)}', flush=True)
        finally:
            release(work_dir)


def command_status(args):
    data = read_json(RESULTS, {})
    for record in data.get('tuning', []):
        print(f"tune  {record['key']}: val {record['val_top1_last_mean']:.2f} "
              f"({(record.get('wall_s') or 0) / 60:.0f} min, {record.get('threads')} threads)")
    for record in data.get('runs', []):
        means = {m: np.mean([v for s, v in t.items() if int(s) in TRAIN_SIZES])
                 for m, t in record['top1'].items()}
        print(f"final {record['key']}: test mean over training sizes "
              + ', '.join(f'{m} {v:.2f}' for m, v in means.items()))
    todo = final_todo(args, data)
    print(f'{len(todo)} final runs left, about '
          f'{remaining_estimate(todo, data, args.work_dir) / 60:.0f} min of training')


# ------------------------------------------------------------------------------- tables
#: Where the generated sections live: the summary in the README's results section, the whole
#: answer, both tables and the plot in docs/results.md (both written by ``tables``).
README = osp.join(REPO, 'README.md')
RESULTS_DOC = osp.join(REPO, 'docs', 'results.md')
TABLES_COMMAND = 'python benchmarks/fashion_mnist_converged.py tables'
SUMMARY_SECTION = 'fashion_mnist_converged_summary'
RESULTS_SECTION = 'fashion_mnist_converged'
SIZE_PLOT = 'fashion_mnist_converged_accuracy_vs_size.png'
LABELS = {'san': 'SAN', 'san_kd_largest': 'SAN, KD from 28 only', 'san_no_kd': 'SAN, no KD',
          'no_meta': 'no meta network', 'san_sum_loss': 'SAN, summed loss'}


def variant_of(run):
    """A run's method, and the recipe changes it trained with against its method's recipe
    (``'san'``, ``'san [epochs=29, kd_mode=largest, sampling=sandwich+1]'``)."""
    base = recipe_for(run['method'])
    changes = {k: v for k, v in run['recipe'].items() if base.get(k) != v}
    if not changes:
        return run['method']
    return f"{run['method']} [" + ', '.join(f'{k}={v}' for k, v in sorted(changes.items())) + ']'


def collect(data):
    """{variant: {mode: {size: [top-1 per seed]}}} and {variant: [seeds]} of the final runs."""
    table, seeds = {}, {}
    for run in data.get('runs', []):
        name = variant_of(run)
        seeds.setdefault(name, []).append(run['seed'])
        for mode, values in run['top1'].items():
            for size, value in values.items():
                table.setdefault(name, {}).setdefault(mode, {}).setdefault(
                    int(size), []).append(value)
    return table, seeds


def stat(values):
    """(mean, sample std or None for one seed)."""
    values = list(values)
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def cell(values):
    if not values:
        return ''
    mean, std = stat(values)
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def nearest_train_size(size):
    # Ties go to the larger size, as SAN's proxy (ScaleEncoder.nearest).
    return min(TRAIN_SIZES, key=lambda t: (abs(t - size), -t))


def best_mode(data, variant, size):
    """The inference mode with the highest validation top-1 at ``size``
    (mean over the variant's seeds; a variant is a method and its recipe changes,
    :func:`variant_of`): chosen on validation, reported on test."""
    val = {}
    for run in data.get('runs', []):
        if variant_of(run) == variant:
            for mode, values in run.get('val_top1', {}).items():
                val.setdefault(mode, []).append(values[str(size)])
    return max(SAN_MODES, key=lambda m: np.mean(val[m])) if val else 'proxy'


def difference(a, b):
    """Mean of a minus mean of b, and the seed spread of that difference
    (sqrt of the sum of the two sample variances; None with one seed)."""
    (ma, sa), (mb, sb) = stat(a), stat(b)
    spread = None if sa is None or sb is None else float(np.hypot(sa, sb))
    return ma - mb, spread


def verdict(diff, spread):
    if spread is None:
        return 'one seed'
    if diff > 2 * spread:
        return 'better'
    if diff < -2 * spread:
        return 'worse'
    return 'within the seed spread'


def answer_paragraph(data, table, seeds):
    """The study's answer, worded from the numbers (no hand-written claims)."""
    if 'san' not in table or not all(f'baseline@{s}' in table for s in TRAIN_SIZES):
        done = ', '.join(f'{m} (seeds {sorted(v)})' for m, v in sorted(seeds.items()))
        return ('**Not answered yet**: the study is still running, and the answer needs SAN and '
                'all five baselines. Finished final runs: ' + (done or 'none') + '; their test '
                'numbers are below, the status of the rest is printed by '
                '`python benchmarks/fashion_mnist_converged.py status`.')
    parts = []
    for size in TRAIN_SIZES:
        diff, spread = difference(table['san']['proxy'][size],
                                  table[f'baseline@{size}']['as_trained'][size])
        parts.append(f'{size} px {diff:+.2f}' + (f' (spread {spread:.2f}, '
                                                 f'{verdict(diff, spread)})' if spread else ''))
    unseen = []
    for size in UNSEEN_SIZES:
        near = nearest_train_size(size)
        mode = best_mode(data, 'san', size)
        diff, spread = difference(table['san'][mode][size],
                                  table[f'baseline@{near}']['calibrated'][size])
        unseen.append(f'{size} px {diff:+.2f} ({mode} vs baseline@{near} calibrated'
                      + (f', {verdict(diff, spread)})' if spread else ')'))
    means = {m: np.mean([np.mean(table[m]['proxy' if m in LABELS else 'as_trained'][s])
                         for s in TRAIN_SIZES]) for m in table if m in LABELS}
    own = np.mean([np.mean(table[f'baseline@{s}']['as_trained'][s]) for s in TRAIN_SIZES])
    ablations = ', '.join(f'{LABELS[m]} {v:.2f}' for m, v in means.items())
    missing = [f'{m} seed {seed}' for m, wanted in FINAL_SEEDS.items() for seed in wanted
               if seed not in seeds.get(m, [])]
    heading = ('**Answer.**' if not missing else
               '**Preliminary answer** (the study is still running; missing: '
               + ', '.join(missing) + '; a comparison with one seed on either side has no '
               'spread and counts for nothing yet).')
    return (
        f'{heading} At convergence ({PROTOCOL["epochs"]} epochs, {PROTOCOL["train_images"]:,} '
        f'training images, seeds {sorted(set(seeds["san"]))}), one SAN model against the five '
        'separately trained networks, each at its own size (test top-1, SAN minus baseline, '
        'mean over seeds; "spread" is the seed standard deviation of that difference, and a '
        'difference counts only beyond twice the spread): ' + '; '.join(parts) + '. '
        'At the unseen sizes, SAN in the mode that is best on the validation split against the '
        'baseline trained at the nearest size with its BN recalibrated at the test size: ' + '; '.join(unseen) + '. '
        f'Mean top-1 over the training sizes: separately trained networks {own:.2f}; '
        f'{ablations}.')


#: The SAN recipe the search chose on the validation split (recipe changes against PROTOCOL),
#: trained for CHOSEN_SEEDS seeds; None while the search runs. Chosen on two seeds among the
#: recipes at about 0.6x the baselines' compute; every candidate's numbers are in the search
#: table that ``tables`` generates into docs/results.md.
CHOSEN = dict(kd_mode='largest', sampling='sandwich+1', epochs=29)
CHOSEN_SEEDS = (0, 1, 2)
#: The config that trains the chosen recipe (checked key by key against the study's run config).
CHOSEN_CONFIG = 'configs/fashion_mnist/san_resnet18_fmnist_sandwich.py'
COMPUTE_PLOT = 'fashion_mnist_converged_compute.png'


def chosen_variant():
    return None if CHOSEN is None else variant_of(
        dict(method='san', recipe=recipe_for('san', CHOSEN)))


def baselines_gmacs():
    """The five separately trained networks' training compute together (one seed each)."""
    return sum(train_gmacs(dict(method=f'baseline@{s}', recipe=recipe_for(f'baseline@{s}')))
               for s in TRAIN_SIZES)


def run_gmacs(run):
    return run.get('train_gmacs') or train_gmacs(run, run.get('trained_images'))


def last_val(run):
    """{size: validation top-1} after a run's last epoch."""
    curve = run['val_top1_by_epoch']
    return {int(s): v for s, v in curve[max(curve, key=int)].items()}


def search_rows(data):
    """Every SAN variant trained so far (tuning runs and the finals, one per seed: a final run
    of a tuned recipe is the same training): {variant: {seeds: {seed: {size: val top-1}},
    gmacs, minutes}}."""
    rows = {}
    for run in data.get('tuning', []) + data.get('runs', []):
        if is_baseline(run['method']):
            continue
        row = rows.setdefault(variant_of(run), dict(seeds={}, gmacs=[], minutes=[]))
        if run['seed'] not in row['seeds']:
            row['seeds'][run['seed']] = last_val(run)
            row['gmacs'].append(run_gmacs(run))
            row['minutes'].append((run.get('wall_s') or 0) / 60)
    return rows


def search_table(data):
    """The recipe search on the validation split: each SAN variant's training compute against
    the five baselines' together, its seeds, and its validation top-1 after the last epoch."""
    total = baselines_gmacs()
    own = {s: [last_val(r)[s] for r in data.get('runs', []) if r['method'] == f'baseline@{s}']
           for s in TRAIN_SIZES}
    lines = ['| recipe | training compute vs the five baselines | seeds | mean val top-1, '
             'training sizes | ' + ' | '.join(f'{s} px' for s in TRAIN_SIZES) + ' | minutes |',
             '|---|---|---|---|' + '---|' * (len(TRAIN_SIZES) + 1)]
    if all(own.values()):
        means = [np.mean(v) for v in own.values()]
        lines.append(f'| five baselines, each at its size | 1.00 | '
                     f'{sorted(r["seed"] for r in data["runs"] if r["method"] == "baseline@28")} '
                     f'| {np.mean(means):.2f} | ' + ' | '.join(f'{m:.2f}' for m in means)
                     + ' | |')
    rows = search_rows(data)
    for name, row in sorted(rows.items(), key=lambda kv: np.mean(kv[1]['gmacs'])):
        per_seed = [np.mean([v[s] for s in TRAIN_SIZES]) for v in row['seeds'].values()]
        mark = '**' if name == chosen_variant() else ''
        lines.append(
            f'| {mark}{name}{mark} | {np.mean(row["gmacs"]) / total:.2f} | '
            f'{sorted(row["seeds"])} | {cell(per_seed)} | '
            + ' | '.join(f'{np.mean([v[s] for v in row["seeds"].values()]):.2f}'
                         for s in TRAIN_SIZES)
            + f' | {np.mean(row["minutes"]):.0f} |')
    return '\n'.join(lines)


def by_seed(data, variant, mode, size):
    """{seed: test top-1} of a variant's final runs at ``size`` in ``mode``."""
    return {r['seed']: r['top1'][mode][str(size)] for r in data.get('runs', [])
            if variant_of(r) == variant and str(size) in r['top1'].get(mode, {})}


def paired(a, b):
    """Mean of a - b over the seeds both have, and the sample std of those differences (None
    with one common seed)."""
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    return float(np.mean(diffs)), (float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None)


def chosen_numbers(data):
    """The chosen recipe's final runs against the five baselines (test split, paired by seed):
    ``dict(variant, seeds, fraction, train=[(size, diff, spread, verdict)],
    unseen=[(size, mode, diff, spread, verdict)])``, the unseen sizes in the mode best on the
    recipe's validation runs against the nearest baseline with BN recalibrated; None before its
    final runs."""
    variant = chosen_variant()
    runs = [r for r in data.get('runs', []) if variant_of(r) == variant]
    if variant is None or not runs:
        return None
    train = []
    for size in TRAIN_SIZES:
        diff, spread = paired(by_seed(data, variant, 'proxy', size),
                              by_seed(data, f'baseline@{size}', 'as_trained', size))
        train.append((size, diff, spread, verdict(diff, spread)))
    unseen = []
    for size in UNSEEN_SIZES:
        mode = best_mode(data, variant, size)
        diff, spread = paired(by_seed(data, variant, mode, size),
                              by_seed(data, f'baseline@{nearest_train_size(size)}',
                                      'calibrated', size))
        unseen.append((size, mode, diff, spread, verdict(diff, spread)))
    return dict(variant=variant, seeds=sorted(r['seed'] for r in runs), train=train,
                unseen=unseen,
                fraction=np.mean([run_gmacs(r) for r in runs]) / baselines_gmacs())


def chosen_answer(data):
    """The chosen recipe against the five baselines on the test split (paired by seed), and its
    training compute against theirs."""
    variant = chosen_variant()
    if variant is None:
        return ('**The recipe search is running** (its validation runs are in the table below); '
                'no recipe is chosen yet.')
    numbers = chosen_numbers(data)
    if numbers is None:
        return (f'**The recipe chosen on the validation split** is `{variant}` (its validation '
                'runs are in the table below); its final runs, which read the test set, are not '
                'done yet.')
    rows = [f'{size} px {diff:+.2f}' + (f' ({spread:.2f}, {word})' if spread else '')
            for size, diff, spread, word in numbers['train']]
    beats = sum(word == 'better' for *_, word in numbers['train'])
    unseen = [f'{size} px {diff:+.2f} ({mode}' + (f', {spread:.2f}, {word})' if spread else ')')
              for size, mode, diff, spread, word in numbers['unseen']]
    return (f'**The chosen recipe**, `{variant}` (seeds {numbers["seeds"]}), against the five '
            'separately trained networks at their own sizes (test top-1, SAN minus baseline, '
            'paired by seed; in brackets the seed std of the difference and the verdict, a '
            'difference counting beyond twice it): ' + '; '.join(rows) + f'. It beats the '
            f'baselines beyond twice the spread at {beats} of {len(TRAIN_SIZES)} sizes, for '
            f'{numbers["fraction"]:.2f}x their training compute together (forward MACs of every '
            'image at every size trained). At the unseen sizes, in the mode best on validation, '
            'against the nearest baseline with BN recalibrated: ' + '; '.join(unseen) + '.')


def chosen_summary(data):
    """The README's sentence on the chosen recipe ('' before its final runs)."""
    numbers = chosen_numbers(data)
    if numbers is None:
        return ''
    counts = {word: sum(w == word for *_, w in numbers['train'])
              for word in ('better', 'worse', 'within the seed spread')}
    unseen_better = sum(w == 'better' for *_, w in numbers['unseen'])
    return (
        f'For less training compute, `{CHOSEN_CONFIG}` ({short_label(numbers["variant"])}) '
        f'trains one SAN for {numbers["fraction"]:.2f}x the five networks\' '
        f'compute; over seeds {numbers["seeds"]}, SAN − network at '
        + ' / '.join(str(size) for size, *_ in numbers['train']) + ' px: '
        + ' / '.join(f'{diff:+.2f}' for _, diff, *_ in numbers['train'])
        + f' (better at {counts["better"]}, worse at {counts["worse"]}, within the seed spread '
        f'at {counts["within the seed spread"]} of {len(TRAIN_SIZES)}), and better at '
        f'{unseen_better} of {len(UNSEEN_SIZES)} unseen sizes '
        '([docs/results.md](docs/results.md#a-better-recipe-for-less-training-compute)).')


def short_label(variant):
    """A variant's name for the plot: 'SAN (paper)', or its changes in a few words
    ('29 ep, KD largest, sandwich+1')."""
    if variant == 'san':
        return 'SAN (paper)'
    if not variant.startswith('san ['):
        return variant
    words = {'epochs': '{} ep', 'kd_mode': 'KD {}', 'sampling': '{}', 'kd_temperature': 'T={}',
             'label_smoothing': 'LS {}', 'kd_weight': 'KD x{}'}
    changes = [c.split('=', 1) for c in variant[len('san ['):-1].split(', ')]
    return ', '.join(words.get(k, k + '={}').format(v) for k, v in changes)


def label_points(ax, points, fontsize=6):
    """Label ``(x, y, text)`` points beside them (to the left below x = 0.8, where the
    full-compute column is to their right); labels of points at about the same x are spread
    downwards so that none overlaps the one above (a thin line to a moved label)."""
    low, high = ax.get_ylim()
    gap = (high - low) * fontsize / 200
    placed = []  # (x, label y) of the labels so far
    for x, y, text in sorted(points, key=lambda p: (round(p[0], 1), -p[1])):
        near = [ly for lx, ly in placed if abs(lx - x) < 0.1]
        ly = min([y] + [ny - gap for ny in near if ny - gap < y + gap])
        placed.append((x, ly))
        left = x < 0.8
        ax.annotate(text, (x, y), xytext=(x - 0.03 if left else x + 0.03, ly),
                    textcoords='data', fontsize=fontsize, va='center',
                    ha='right' if left else 'left',
                    arrowprops=None if ly == y else dict(arrowstyle='-', lw=0.4, color='0.6'))


def compute_plot(data, table, out_dir):
    """Accuracy against training compute: validation top-1 over the training sizes of every SAN
    variant and of the five baselines (left), test top-1 over the unseen sizes of the final runs
    (right)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    total = baselines_gmacs()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    labels = dict(left=[], right=[])
    own = [np.mean([last_val(r)[s] for r in data.get('runs', [])
                    if r['method'] == f'baseline@{s}']) for s in TRAIN_SIZES]
    if all(np.isfinite(own)):
        left.scatter([1.0], [np.mean(own)], marker='s', color='black', zorder=3)
        labels['left'].append((1.0, np.mean(own), 'five baselines'))
    for name, row in search_rows(data).items():
        per_seed = [np.mean([v[s] for s in TRAIN_SIZES]) for v in row['seeds'].values()]
        x = np.mean(row['gmacs']) / total
        left.errorbar([x], [np.mean(per_seed)], yerr=[np.std(per_seed)], fmt='o',
                      color='tab:red' if name == chosen_variant() else
                      'tab:blue' if name == 'san' else 'tab:gray', capsize=3,
                      zorder=4 if name == chosen_variant() else 2)
        labels['left'].append((x, np.mean(per_seed), short_label(name)))
    left.set_xlabel('training compute / the five baselines together')
    left.set_ylabel('validation top-1 (%), mean over the training sizes')
    for name in [v for v in table if not is_baseline(v)]:
        runs = [r for r in data['runs'] if variant_of(r) == name]
        values = [np.mean(table[name][best_mode(data, name, s)][s]) for s in UNSEEN_SIZES]
        x = np.mean([run_gmacs(r) for r in runs]) / total
        right.scatter([x], [np.mean(values)], color='tab:red' if name == chosen_variant()
                      else 'tab:blue' if name == 'san' else 'tab:gray')
        labels['right'].append((x, np.mean(values), short_label(name)))
    if all(f'baseline@{s}' in table for s in TRAIN_SIZES):
        base = [np.mean(table[f'baseline@{nearest_train_size(s)}']['calibrated'][s])
                for s in UNSEEN_SIZES]
        right.scatter([1.0], [np.mean(base)], marker='s', color='black')
        right.annotate('nearest baseline, BN recalibrated', (1.0, np.mean(base)), fontsize=8,
                       xytext=(4, 4), textcoords='offset points')
    right.set_xlabel('training compute / the five baselines together')
    right.set_ylabel('test top-1 (%), mean over the unseen sizes')
    for ax, side in ((left, 'left'), (right, 'right')):
        ax.set_xlim(0, 1.25)
        ax.grid(alpha=0.3)
        label_points(ax, labels[side])
    fig.tight_layout()
    path = osp.join(out_dir, COMPUTE_PLOT)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def method_table(table):
    methods = [m for m in LABELS if m in table]
    header = ['size', 'baseline at its own size', 'one network @28',
              *(LABELS[m] for m in methods)]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for size in TRAIN_SIZES:
        own = table.get(f'baseline@{size}', {}).get('as_trained', {}).get(size, [])
        at28 = table.get('baseline@28', {}).get('as_trained', {}).get(size, [])
        row = [str(size), cell(own), cell(at28),
               *(cell(table[m]['proxy'][size]) for m in methods)]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def unseen_table(data, table):
    """Baselines at the nearest training size, SAN in every mode, and each
    SAN-family method (SAN and the ablations that have runs) in the mode that
    is best on its validation split."""
    family = [m for m in LABELS if m in table]
    lines = ['| size | baseline at nearest size, as trained | same, BN recalibrated | '
             + ' | '.join(f'SAN {m}' for m in SAN_MODES)
             + ''.join(f' | {LABELS[m]}, mode best on val' for m in family) + ' |',
             '|---|---|---|' + '---|' * (len(SAN_MODES) + len(family))]
    for size in UNSEEN_SIZES:
        near = f'baseline@{nearest_train_size(size)}'
        base = table.get(near, {})
        san = table.get('san', {})
        chosen = []
        for method in family:
            mode = best_mode(data, method, size)
            values = table[method].get(mode, {}).get(size, [])
            chosen.append(f'{cell(values)} ({mode})' if values else '')
        lines.append(
            f'| {size} ({near}) | {cell(base.get("as_trained", {}).get(size, []))} | '
            f'{cell(base.get("calibrated", {}).get(size, []))} | '
            + ' | '.join(cell(san.get(m, {}).get(size, [])) for m in SAN_MODES)
            + ''.join(f' | {c}' for c in chosen) + ' |')
    return '\n'.join(lines)


def choices_section(data):
    lines = ['| choice | value | validation evidence |', '|---|---|---|']
    for choice in CHOICES:
        lines.append(f'| {choice["what"]} | {choice["value"]} | {choice["evidence"]} |')
    lines += ['', 'Every tuning run (validation top-1 after the last epoch, mean over the '
              "method's training sizes):", '',
              '| run | val top-1 | minutes | threads |', '|---|---|---|---|']
    for run in data.get('tuning', []):
        lines.append(f'| {run["key"]} | {run["val_top1_last_mean"]:.2f} | '
                     f'{(run.get("wall_s") or 0) / 60:.0f} | {run.get("threads")} |')
    return '\n'.join(lines)


def plots(data, table, out_dir):
    from san_mm.analysis import plot_accuracy_vs_size
    curves = {}
    if all(f'baseline@{s}' in table for s in TRAIN_SIZES):
        curves['baselines, each at its own size'] = {
            s: np.mean(table[f'baseline@{s}']['as_trained'][s]) for s in TRAIN_SIZES}
    if 'baseline@28' in table:
        curves['one network @28'] = {s: np.mean(v) for s, v in
                                     table['baseline@28']['as_trained'].items()}
    for mode in SAN_MODES:
        if 'san' in table:
            curves[f'SAN {mode}'] = {s: np.mean(v) for s, v in table['san'][mode].items()}
    size_plot = osp.join(out_dir, SIZE_PLOT)
    if curves:
        plot_accuracy_vs_size(curves, size_plot, train_sizes=TRAIN_SIZES,
                              title='Fashion-MNIST, ResNet-18 width 16, test top-1 (converged)')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for run in data.get('runs', []):
        if run['seed'] != 0 or run['method'] not in ('san', 'baseline@28', 'baseline@12'):
            continue
        curve = run['val_top1_by_epoch']
        epochs = sorted(curve, key=int)
        for size in ('28', '12'):
            if size in curve[epochs[0]]:
                ax.plot([int(e) for e in epochs], [curve[e][size] for e in epochs],
                        label=f'{run["method"]} @{size}')
    ax.set_xlabel('epoch')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_ylim(bottom=80)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    curve_plot = osp.join(out_dir, 'fashion_mnist_converged_learning_curves.png')
    fig.savefig(curve_plot, dpi=120)
    plt.close(fig)
    return size_plot, curve_plot


def summary_lines(data, table, seeds):
    """The answer and the two tables: docs/results.md's section and the
    .md's first part."""
    return [answer_paragraph(data, table, seeds), '',
            '### Training sizes (test top-1 %, mean ± sample std over seeds)', '',
            method_table(table), '',
            '### Unseen sizes (test top-1 %; modes chosen on the validation split)', '',
            unseen_table(data, table), '',
            '### A better recipe for less training compute', '',
            chosen_answer(data), '',
            'The search, on the validation split (last epoch; compute: the forward MACs of every '
            'image at every size trained, against the five baselines\' together):', '',
            search_table(data)]


def summary_table(data, table, seeds):
    """The README's summary: per size, one SAN model against the separately
    trained network (at a training size its own; at an unseen size the
    nearest one with BN recalibrated, SAN in its best mode on validation)."""
    lines = ['| size | separately trained network | SAN | SAN − network (seed spread) '
             '| verdict |',
             '|---|---|---|---|---|']
    for size in ALL_SIZES:
        if size in TRAIN_SIZES:
            base, base_mode, mode = f'baseline@{size}', 'as_trained', 'proxy'
            label = f'{cell(table[base][base_mode][size])} (trained at {size})'
        else:
            near = nearest_train_size(size)
            base, base_mode = f'baseline@{near}', 'calibrated'
            mode = best_mode(data, 'san', size)
            label = f'{cell(table[base][base_mode][size])} (trained at {near}, BN recalibrated)'
        diff, spread = difference(table['san'][mode][size], table[base][base_mode][size])
        shown = f'{diff:+.2f}' + (f' ({spread:.2f})' if spread is not None else '')
        lines.append(f'| {size}{"" if size in TRAIN_SIZES else " (unseen)"} | {label} | '
                     f'{cell(table["san"][mode][size])} ({mode}) | {shown} | '
                     f'{verdict(diff, spread)} |')
    own = np.mean([np.mean(table[f'baseline@{s}']['as_trained'][s]) for s in TRAIN_SIZES])
    san = np.mean([np.mean(table['san']['proxy'][s]) for s in TRAIN_SIZES])
    lines += ['', f'Mean over the training sizes: SAN {san:.2f}, the separately trained networks '
              f'{own:.2f}. A difference counts only beyond twice its seed spread.']
    return '\n'.join(lines)


def readme_summary(data):
    """The README's section: the protocol in one line and the per-size
    verdicts (the full answer while the study is unfinished)."""
    table, seeds = collect(data)
    if 'san' not in table or not all(f'baseline@{s}' in table for s in TRAIN_SIZES):
        return answer_paragraph(data, table, seeds)
    missing = [f'{m} seed {seed}' for m, wanted in FINAL_SEEDS.items() for seed in wanted
               if seed not in seeds.get(m, [])]
    status = ('' if not missing else ' **Preliminary** (the study is still running; missing: '
              + ', '.join(missing) + ').')
    chosen = chosen_summary(data)
    return '\n'.join([
        f'ResNet-18 (width 16) on Fashion-MNIST, trained to convergence ({PROTOCOL["epochs"]} '
        f'epochs, {PROTOCOL["train_images"]:,} training images; every choice on the validation '
        f'split), test top-1 %, mean over seeds {sorted(set(seeds["san"]))}:{status}', '',
        summary_table(data, table, seeds), *(['', chosen] if chosen else [])])


def results_section(data):
    """docs/results.md's section, from the results file alone (the plot it
    shows is written by write_tables)."""
    table, seeds = collect(data)
    return '\n'.join([*summary_lines(data, table, seeds), '',
                      f'![accuracy against training compute](results/{COMPUTE_PLOT})', '',
                      f'![accuracy vs size](results/{SIZE_PLOT})'])


def write_tables(data, check=False):
    """docs/results/fashion_mnist_converged.md, its plots, the README's
    summary and docs/results.md's section, all from the results file.

    Args:
        check (bool): Write nothing; return whether the .md and both
            sections are what the results file makes.
    """
    table, seeds = collect(data)
    out_dir = osp.dirname(RESULTS)
    protocol = data.get('protocol') or dict(PROTOCOL, choices=CHOICES)
    seconds = {}
    for run in data.get('runs', []):
        seconds.setdefault(run['method'], []).append(run.get('wall_s') or 0)
    summary = summary_lines(data, table, seeds)
    body = ['# Fashion-MNIST, converged: one SAN model vs separately trained networks', '',
            'Generated from `fashion_mnist_converged.json` by '
            f'`{TABLES_COMMAND}`; do not edit by hand.', '',
            *summary, '',
            f'![accuracy against training compute]({COMPUTE_PLOT})', '',
            f'![accuracy vs size]({SIZE_PLOT})', '',
            '![learning curves](fashion_mnist_converged_learning_curves.png)', '',
            '## Protocol', '',
            '\n'.join(f'- {k}: {v}' for k, v in protocol.items() if k != 'choices'), '',
            '- seeds: ' + ', '.join(f'{m} {sorted(v)}' for m, v in sorted(seeds.items())),
            '- training minutes per run (wall clock, two runs side by side on 2 cores, 1 '
            'thread each): ' + ', '.join(f'{m} {np.mean(v) / 60:.0f}'
                                         for m, v in sorted(seconds.items())), '',
            '## Choices, made on the validation split', '', choices_section(data), '']
    md_path = osp.join(out_dir, 'fashion_mnist_converged.md')
    text = '\n'.join(body)
    if check:
        with open(md_path) as f:
            current = f.read() == text
        print(f'{md_path}: ' + ('up to date' if current else f'out of date; run {TABLES_COMMAND}'))
    else:
        plots(data, table, out_dir)
        compute_plot(data, table, out_dir)
        with open(md_path, 'w') as f:
            f.write(text)
        print(f'wrote {md_path} and plots')
        current = True
    for path, name, section in ((README, SUMMARY_SECTION, readme_summary(data)),
                                (RESULTS_DOC, RESULTS_SECTION, results_section(data))):
        current &= write_section(path, name, TABLES_COMMAND, section, check=check)
    return current


def main():
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=WORK_DIR)
    parser.add_argument('--results', default=RESULTS, help='the results file')
    sub = parser.add_subparsers(dest='command', required=True)
    tune = sub.add_parser('tune', help='one validation run')
    tune.add_argument('method', choices=list(METHODS))
    tune.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                      help=f'recipe changes against PROTOCOL, keys of {list(SAN_KEYS)}')
    tune.add_argument('--seed', type=int, default=0)
    for name in ('final', 'status'):
        p = sub.add_parser(name)
        p.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
        p.add_argument('--seeds', type=int, nargs='+', default=None,
                       help='default: 2 seeds for SAN and the baselines, 1 for the others')
        p.add_argument('--workers', type=int, default=1)
        p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                       help='recipe changes against PROTOCOL for every method given (e.g. '
                       'the chosen SAN recipe); a finished tuning run of the same recipe and '
                       'seed is not trained again, only tested')
    tables = sub.add_parser('tables', help='regenerate the .md, plots, the README summary '
                            'and the docs/results.md section')
    tables.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if any of them is out of date')
    args = parser.parse_args()
    RESULTS = args.results
    if args.command == 'tables':
        if not write_tables(read_json(RESULTS, {}), check=args.check) and args.check:
            sys.exit(1)
        return
    {'tune': command_tune, 'final': command_final, 'status': command_status}[args.command](args)


if __name__ == '__main__':
    main()
