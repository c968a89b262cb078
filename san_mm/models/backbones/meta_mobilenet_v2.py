"""MetaMobileNetV2: the paper's SAN MobileNetV2, i.e. :func:`ScaleAdaptive` of mmpretrain's MobileNetV2.

As in the reference, every conv is generated (the 3x3 stem and the final 1x1 to 1280 included) and
every BN is private; only the classifier (in the head) is shared.
"""
from typing import Optional, Sequence

from mmpretrain.registry import MODELS

from ..utils import DEFAULT_TRAIN_SIZES
from .scale_adaptive import ScaleAdaptive


@MODELS.register_module()
def MetaMobileNetV2(widen_factor: float = 1.,
                    in_channels: int = 3,
                    out_indices: Sequence[int] = (7, ),
                    frozen_stages: int = -1,
                    norm_cfg: dict = dict(type='BN'),
                    act_cfg: dict = dict(type='ReLU6'),
                    norm_eval: bool = False,
                    with_cp: bool = False,
                    train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
                    scale_encoding: Optional[dict] = None,
                    inference_mode: str = 'proxy',
                    use_meta_network: bool = True,
                    meta_init: str = 'mobilenet_v2',
                    init_cfg=None):
    """Scale-adaptive MobileNetV2 (SAN, ECCV 2020): ``ScaleAdaptive`` of
    mmpretrain's ``MobileNetV2`` with every conv generated.

    Args:
        widen_factor, out_indices, frozen_stages, norm_cfg, act_cfg,
            norm_eval, with_cp: As in mmpretrain's ``MobileNetV2``.
        in_channels (int): Must be 3 (mmpretrain's MobileNetV2 reads RGB).
        train_sizes, scale_encoding, inference_mode, use_meta_network,
            init_cfg: As in :func:`ScaleAdaptive`.
        meta_init (str): Defaults to the reference's ``'mobilenet_v2'``
            (A ~ N(0, 0.01), B = 0).

    Example:
        >>> import torch
        >>> from san_mm.models import MetaMobileNetV2
        >>> net = MetaMobileNetV2(widen_factor=0.25).eval()
        >>> tuple(net(torch.rand(1, 3, 96, 96))[-1].shape)
        (1, 1280, 3, 3)
    """
    if not widen_factor > 0:
        raise ValueError('MetaMobileNetV2: widen_factor must be positive '
                         f'(1.0 is the standard width), got {widen_factor!r}')
    if in_channels != 3:
        raise ValueError(
            f'MetaMobileNetV2: in_channels={in_channels!r}, but mmpretrain\'s '
            'MobileNetV2, which it converts, reads 3 channels: give it RGB '
            "images (e.g. LoadImageFromFile's default color_type), or use "
            "ScaleAdaptive with a backbone that takes in_channels")
    plain = dict(type='MobileNetV2', widen_factor=widen_factor,
                 out_indices=tuple(out_indices), frozen_stages=frozen_stages,
                 norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
                 with_cp=with_cp)
    return ScaleAdaptive(plain, train_sizes, 'all', scale_encoding,
                         inference_mode, use_meta_network, meta_init, init_cfg)
