"""Evaluate one checkpoint at many sizes in several inference modes; keep calibrated BN with the
model; store a sweep as the checkpoint's size table (with latencies on this machine)."""
import copy
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader, Runner
from mmpretrain import get_model

from san_mm.analysis import complexity_per_size
from san_mm.analysis.timing import machine_info, median_seconds
from san_mm.engine.hooks import PerSizeBNHook
from san_mm.engine.utils import scale_adaptive_backbone, unwrap_model
from san_mm.models.utils import (INFERENCE_MODES, check_inference_mode,
                                 validate_sizes)
from .size_table import (SIZE_TABLE_KEY, SizeTableError, _is_int,
                         build_size_table, select_calibrated_state,
                         write_size_table)


def _with_mode(cfg: Config, mode: str, calibration_images: int) -> Config:
    cfg = copy.deepcopy(cfg)
    hooks = [h for h in cfg.get('custom_hooks') or []
             if h.get('type') != 'PerSizeBNHook']
    hooks.append(dict(type='PerSizeBNHook', inference_mode=mode,
                      calibration_images=calibration_images))
    cfg.custom_hooks = hooks
    cfg.model.backbone.inference_mode = mode
    return cfg


def default_sweep_sizes(train_sizes: Sequence[int]) -> List[int]:
    """The sizes a sweep evaluates unless told: the training sizes, the
    sizes halfway between neighbouring ones, and half a step beyond each
    end (e.g. 28/24/20/16/12 -> 30, 28, 26, ..., 12, 10), largest first.

    Args:
        train_sizes (Sequence[int]): The model's training sizes.

    Returns:
        list[int]: Sizes, largest first.
    """
    sizes = sorted(validate_sizes(train_sizes, 'train_sizes'))
    chosen = set(sizes)
    for lower, upper in zip(sizes, sizes[1:]):
        chosen.add((lower + upper) // 2)
    if len(sizes) > 1:
        chosen.add(sizes[0] - (sizes[1] - sizes[0]) // 2)
        chosen.add(sizes[-1] + (sizes[-1] - sizes[-2]) // 2)
    return sorted((s for s in chosen if s > 0), reverse=True)


#: Which of the config's dataloaders a sweep evaluates on.
SWEEP_SPLITS = ('val', 'test')


def evaluation_split(cfg: Config, split: str) -> Config:
    """``cfg`` whose test loop evaluates the config's ``<split>_dataloader``
    with its ``<split>_evaluator`` (a copy for ``'val'``; ``cfg`` itself for
    ``'test'``).

    Raises:
        ValueError: For an unknown split, or ``'val'`` without a
            ``val_dataloader``.
    """
    if split not in SWEEP_SPLITS:
        raise ValueError(f'split must be one of {list(SWEEP_SPLITS)} (the '
                         f"config's <split>_dataloader), got {split!r}")
    if split == 'test':
        return cfg
    if not cfg.get('val_dataloader'):
        raise ValueError(
            "the sweep evaluates on the config's val_dataloader (split="
            "'val'), but this config has none: add a val_dataloader on a "
            'held-out validation split (as configs/_base_/datasets/'
            'fashion_mnist_san.py does), or print a table measured on the '
            'test set with --split test')
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    cfg.test_evaluator = copy.deepcopy(cfg.get('val_evaluator')
                                       or cfg.test_evaluator)
    return cfg


def sweep_sizes(cfg: Config, checkpoint: str, sizes: Sequence[int],
                modes: Sequence[str] = ('proxy', 'ideal', 'calibrated',
                                        'data_free'),
                calibration_images: int = 256,
                split: str = 'val',
                on_tested: Optional[Callable[[str, Runner], None]] = None
                ) -> Dict[str, Dict]:
    """Test ``checkpoint`` at every size in every mode (one test run per mode).

    Args:
        split (str): Evaluate on the config's ``val_dataloader`` (``'val'``,
            the default: choices made from a sweep belong on validation data)
            or its ``test_dataloader`` (``'test'``).
        on_tested (callable, optional): Called as ``on_tested(mode, runner)``
            after each mode's test run, e.g. to keep the calibrated BN
            statistics of the ``'calibrated'`` run.

    Returns:
        dict: ``{mode: metrics}`` with ``name@size`` keys, as the test loop
        reports them.
    """
    sizes = list(validate_sizes(sizes, 'sizes'))
    for mode in modes:
        check_inference_mode(mode)
    cfg = evaluation_split(cfg, split)
    results = {}
    for mode in modes:
        run_cfg = _with_mode(cfg, mode, calibration_images)
        run_cfg.test_cfg.test_sizes = sizes
        run_cfg.load_from = checkpoint
        run_cfg.experiment_name = f'sweep_{mode}_{time.time_ns()}'
        runner = Runner.from_cfg(run_cfg)
        results[mode] = runner.test()
        if on_tested is not None:
            on_tested(mode, runner)
    return results


#: Source checkpoint ``meta`` entries a calibrated checkpoint keeps.
KEPT_META = ('dataset_meta', 'epoch', 'iter', 'seed', 'experiment_name',
             'cfg', 'mmengine_version')


def calibrate_checkpoint(cfg: Config, checkpoint: str, sizes: Sequence[int],
                         out_file: str, calibration_images: int = 256,
                         calibration_view: str = 'test') -> List[int]:
    """Calibrate BN statistics for ``sizes`` once and save them with the model.

    The written checkpoint (``state_dict`` + ``meta``) loads into the same
    config; testing it with ``inference_mode='calibrated'`` uses the stored
    statistics instead of recalibrating.

    Returns:
        list[int]: All sizes with calibrated statistics in ``out_file``.
    """
    sizes = list(validate_sizes(sizes, 'sizes'))
    run_cfg = _with_mode(cfg, 'calibrated', calibration_images)
    run_cfg.load_from = checkpoint
    run_cfg.experiment_name = f'calibrate_{time.time_ns()}'
    runner = Runner.from_cfg(run_cfg)
    runner.load_or_resume()
    hook = PerSizeBNHook(inference_mode='calibrated',
                         calibration_images=calibration_images,
                         calibration_view=calibration_view)
    backbone = scale_adaptive_backbone(runner, 'calibrate_checkpoint')
    for size in sizes:
        if size in backbone.train_sizes:
            raise ValueError(
                f'--sizes {size} is a training size (train_sizes='
                f'{list(backbone.train_sizes)}): it has its own BN; pass only '
                'sizes that are not trained on')
        backbone.check_size_fits(size, '--sizes value', 'remove it')
        hook.calibrate(runner, size)
    model = unwrap_model(runner)
    # What the source knew about itself (class names for the inferencers,
    # epoch, seed, config) travels on; resume state does not (no optimizer).
    source = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    meta = {k: v for k, v in (source.get('meta') or {}).items()
            if k in KEPT_META}
    meta.update(calibrated_sizes=backbone.calibrated_sizes,
                calibration_images=calibration_images,
                calibration_view=hook.calibration_view,
                source_checkpoint=checkpoint)
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, out_file)
    return backbone.calibrated_sizes


# ------------------------------------------------- the size table of a sweep
@torch.no_grad()
def measure_latency(model: torch.nn.Module, table: dict, batch: int = 1,
                    min_run_time: float = 0.5) -> dict:
    """Time the model's forward at every size of ``table`` in that size's
    best mode, with ``torch.utils.benchmark.Timer.blocked_autorange`` (the
    median; this process's thread count).

    Only the network is timed (``model(x, mode='tensor')`` on a batch of
    zeros): image decoding and resizing are not included.

    Args:
        model (nn.Module): The classifier, with the table's calibrated BN.
        table (dict): The size table (sizes, best modes, ``in_channels``).
        batch (int): Images per timed forward. Defaults to 1.
        min_run_time (float): Seconds of timing per size. Defaults to 0.5.

    Returns:
        dict: The ``latency`` block of a size table.
    """
    if not _is_int(batch) or batch < 1:
        raise SizeTableError(f'latency batch must be a positive int, got '
                             f'{batch!r}; e.g. --latency-batch 1')
    backbone = model.backbone
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    ms = {}
    try:
        for row in table['sizes']:
            x = torch.zeros(batch, table.get('in_channels', 3), row['size'],
                            row['size'], device=param.device,
                            dtype=param.dtype)
            with backbone.at_size(row['size'], row['best_mode']):
                model(x, mode='tensor')  # warm-up: kernels generated, cached
                seconds = median_seconds(lambda: model(x, mode='tensor'),
                                         min_run_time)
            ms[str(row['size'])] = round(seconds * 1e3, 4)
    finally:
        model.train(was_training)
    return dict(machine=machine_info(param.device), batch=int(batch),
                method='median of torch.utils.benchmark.Timer.'
                'blocked_autorange, network forward only (no decoding or '
                'resizing)', ms=ms)


def store_size_table(cfg: Config,
                     checkpoint: str,
                     out_file: str,
                     sizes: Sequence[int],
                     modes: Sequence[str] = INFERENCE_MODES,
                     calibration_images: int = 256,
                     split: str = 'val',
                     metric: str = 'accuracy/top1',
                     latency_batch: Optional[int] = None,
                     latency_min_run_time: float = 0.5) -> dict:
    """Sweep ``checkpoint`` on validation data and write a checkpoint that
    holds the size table, with calibrated BN statistics for the swept unseen
    sizes where ``calibrated`` is the best mode (and none for the others).

    Args:
        cfg (Config): The model's config (as the tools load it).
        checkpoint (str): The checkpoint to sweep.
        out_file (str): The checkpoint to write (``state_dict`` + ``meta``;
            optimiser states are left out: resume training from the source).
        sizes (Sequence[int]): Sizes to measure.
        modes (Sequence[str]): Inference modes to measure.
        calibration_images (int): Training images per calibrated size.
        split (str): Must be ``'val'``: sizes are chosen on validation data.
        metric (str): The accuracy metric stored.
        latency_batch (int, optional): Also time the network at every size
            on this machine with this batch size.
        latency_min_run_time (float): Seconds of timing per size.

    Returns:
        dict: The table written.
    """
    if split != 'val':
        raise SizeTableError(
            f'a size table chooses sizes at serving time, so it is measured '
            f"on validation data; got split={split!r}: use split='val' "
            '(tools/sweep_sizes.py --split val, the default)')
    sizes = list(validate_sizes(sizes, 'sizes'))
    found = {}

    def keep(mode, runner):
        dataset = runner.test_loop.dataloader.dataset
        found['dataset'] = type(dataset).__name__
        found['num_images'] = len(dataset)
        if mode == 'calibrated':
            state = unwrap_model(runner).state_dict()
            found['calibrated'] = {
                k: v.detach().cpu().clone()
                for k, v in select_calibrated_state(state, sizes).items()}

    start = time.time()
    results = sweep_sizes(cfg, checkpoint, sizes, modes, calibration_images,
                          split=split, on_tested=keep)
    model = get_model(copy.deepcopy(cfg))  # MACs do not depend on the mode
    in_channels = model.backbone.in_channels_
    complexity = complexity_per_size(model, sizes, in_channels)
    backbone_cfg = cfg.model.backbone
    train_sizes = list(validate_sizes(backbone_cfg.get('train_sizes')))
    table = build_size_table(
        results, complexity, train_sizes, metric=metric,
        dataset=found.get('dataset', ''), split=split,
        num_images=found.get('num_images', 0),
        calibration_images=calibration_images, in_channels=in_channels,
        source_checkpoint=checkpoint)

    source = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = source.get('state_dict', source)
    swept_unseen = [s for s in sizes if s not in train_sizes]
    state_dict = {k: v for k, v in state_dict.items()
                  if k not in select_calibrated_state(state_dict,
                                                      swept_unseen)}
    winners = table['calibrated_sizes']
    stored = select_calibrated_state(found.get('calibrated', {}), winners)
    missing = [s for s in winners
               if not select_calibrated_state(stored, [s])]
    if missing:
        raise SizeTableError(
            f'calibrated mode is best at sizes {missing}, but the sweep kept '
            'no calibrated BN statistics for them; sweep with the calibrated '
            'mode included (--modes ... calibrated)')
    state_dict.update(stored)
    meta = {k: v for k, v in (source.get('meta') or {}).items()
            if k != SIZE_TABLE_KEY}
    write_size_table(out_file, state_dict, table, meta)
    if latency_batch is not None:
        model = get_model(copy.deepcopy(cfg), pretrained=out_file,
                          device=get_device())
        table['latency'] = measure_latency(model, table, latency_batch,
                                           latency_min_run_time)
        write_size_table(out_file, state_dict, table, meta)
    print_log(f'size table of {len(table["sizes"])} sizes written to '
              f'{out_file} ({time.time() - start:.0f} s)', logger='current')
    return table
