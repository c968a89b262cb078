"""Evaluate one checkpoint at many sizes in several inference modes; keep calibrated BN with the model."""
import copy
import time
from typing import Dict, List, Sequence

import torch
from mmengine.config import Config
from mmengine.runner import Runner

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


def sweep_sizes(cfg: Config, checkpoint: str, sizes: Sequence[int],
                modes: Sequence[str] = ('proxy', 'ideal', 'calibrated',
                                        'data_free'),
                calibration_images: int = 256) -> Dict[str, Dict]:
    """Test ``checkpoint`` at every size in every mode (one test run per mode).

    Returns:
        dict: ``{mode: metrics}`` with ``name@size`` keys, as the test loop
        reports them.
    """
    sizes = list(validate_sizes(sizes, 'sizes'))
    for mode in modes:
        check_inference_mode(mode)
    results = {}
    for mode in modes:
        run_cfg = _with_mode(cfg, mode, calibration_images)
        run_cfg.test_cfg.test_sizes = sizes
        run_cfg.load_from = checkpoint
        run_cfg.experiment_name = f'sweep_{mode}_{time.time_ns()}'
        results[mode] = Runner.from_cfg(run_cfg).test()
    return results


def calibrate_checkpoint(cfg: Config, checkpoint: str, sizes: Sequence[int],
                         out_file: str, calibration_images: int = 256) -> List[int]:
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
                         calibration_images=calibration_images)
    backbone = scale_adaptive_backbone(runner, 'calibrate_checkpoint')
    for size in sizes:
        if size in backbone.train_sizes:
            raise ValueError(f'{size} is a training size: it has its own BN; '
                             'calibrate only unseen sizes')
        hook.calibrate(runner, size)
    model = unwrap_model(runner)
    torch.save({'state_dict': model.state_dict(),
                'meta': dict(calibrated_sizes=backbone.calibrated_sizes,
                             calibration_images=calibration_images,
                             source_checkpoint=checkpoint)}, out_file)
    return backbone.calibrated_sizes
