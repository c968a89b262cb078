"""Evaluate one checkpoint at many sizes in several inference modes; keep calibrated BN with the model."""
import copy
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.runner import CheckpointLoader, Runner

from san_mm.engine.hooks import PerSizeBNHook
from san_mm.engine.utils import scale_adaptive_backbone, unwrap_model
from san_mm.models.utils import check_inference_mode, validate_sizes


def _with_mode(cfg: Config, mode: str, calibration_images: int) -> Config:
    cfg = copy.deepcopy(cfg)
    hooks = [h for h in cfg.get('custom_hooks') or []
             if h.get('type') != 'PerSizeBNHook']
    hooks.append(dict(type='PerSizeBNHook', inference_mode=mode,
                      calibration_images=calibration_images))
    cfg.custom_hooks = hooks
    cfg.model.backbone.inference_mode = mode
    return cfg


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
