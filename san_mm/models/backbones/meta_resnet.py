"""MetaResNet: the paper's SAN ResNet, i.e. :func:`ScaleAdaptive` applied to mmpretrain's ResNet.

What is generated follows the reference: every conv inside the residual blocks, the 1x1 projection
shortcuts included; the stem conv is shared by all sizes (the classifier FC lives in the head and is
shared too). Every BN, the stem BN included, is private per training size.
"""
from typing import Optional, Sequence

from mmpretrain.registry import MODELS

from ..utils import DEFAULT_TRAIN_SIZES
from .scale_adaptive import ScaleAdaptive

DEPTHS = (18, 34, 50, 101, 152)


def plain_resnet_cfg(depth, in_channels, stem_channels, base_channels,
                     stem_kernel_size, stem_stride, stem_pool, **kwargs):
    """The mmpretrain backbone config of a ResNet with this stem:
    ``ResNet`` (7x7, stride 2, max-pool), ``ResNet_CIFAR`` (3x3, stride 1, no
    max-pool) or :class:`ResNetCustomStem` (any other)."""
    cfg = dict(depth=depth, in_channels=in_channels,
               stem_channels=stem_channels, base_channels=base_channels,
               **kwargs)
    stem = (stem_kernel_size, stem_stride, bool(stem_pool))
    if stem == (7, 2, True):
        return dict(type='ResNet', **cfg)
    if stem == (3, 1, False):
        return dict(type='ResNet_CIFAR', **cfg)
    return dict(type='ResNetCustomStem', stem_kernel_size=stem_kernel_size,
                stem_stride=stem_stride, stem_pool=stem_pool, **cfg)


@MODELS.register_module()
def MetaResNet(depth: int,
               in_channels: int = 3,
               stem_channels: int = 64,
               base_channels: int = 64,
               stem_kernel_size: int = 7,
               stem_stride: int = 2,
               stem_pool: bool = True,
               num_stages: int = 4,
               strides: Sequence[int] = (1, 2, 2, 2),
               dilations: Sequence[int] = (1, 1, 1, 1),
               out_indices: Sequence[int] = (3, ),
               frozen_stages: int = -1,
               norm_cfg: dict = dict(type='BN', requires_grad=True),
               norm_eval: bool = False,
               with_cp: bool = False,
               zero_init_residual: bool = False,
               train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
               scale_encoding: Optional[dict] = None,
               inference_mode: str = 'proxy',
               use_meta_network: bool = True,
               meta_init: str = 'resnet',
               init_cfg=None):
    """Scale-adaptive ResNet (SAN, ECCV 2020): ``ScaleAdaptive`` of
    mmpretrain's ``ResNet`` (or ``ResNet_CIFAR`` / :class:`ResNetCustomStem`
    for small-image stems) with every conv but the stem generated.

    Args:
        depth (int): Network depth, from {18, 34, 50, 101, 152}.
        in_channels, stem_channels, base_channels, num_stages, strides,
            dilations, out_indices, frozen_stages, norm_cfg, norm_eval,
            with_cp, zero_init_residual: As in mmpretrain's ``ResNet``
            (``zero_init_residual`` defaults to False, as the reference).
        stem_kernel_size (int): Kernel of the (shared) stem conv. Defaults
            to 7 (ImageNet); small images use 3.
        stem_stride (int): Stride of the stem conv. Defaults to 2.
        stem_pool (bool): Max-pool after the stem. Defaults to True.
        train_sizes, scale_encoding, inference_mode, use_meta_network,
            init_cfg: As in :func:`ScaleAdaptive`.
        meta_init (str): Defaults to the reference's ``'resnet'``.

    Example:
        >>> import torch
        >>> from san_mm.models import MetaResNet
        >>> net = MetaResNet(depth=18, stem_channels=8, base_channels=8,
        ...                  out_indices=(0, 1, 2, 3)).eval()
        >>> for out in net(torch.rand(1, 3, 160, 160)):
        ...     print(tuple(out.shape))
        (1, 8, 40, 40)
        (1, 16, 20, 20)
        (1, 32, 10, 10)
        (1, 64, 5, 5)
    """
    if depth not in DEPTHS:
        raise KeyError(f'invalid depth {depth!r} for MetaResNet; expected '
                       f'one of {list(DEPTHS)} (set model.backbone.depth)')
    if not 1 <= num_stages <= 4:
        raise ValueError('MetaResNet: num_stages must be in 1..4, got '
                         f'{num_stages!r}')
    if len(strides) != num_stages or len(dilations) != num_stages:
        raise ValueError(
            f'MetaResNet: strides {tuple(strides)} and dilations '
            f'{tuple(dilations)} must each have num_stages={num_stages} '
            'entries; give one stride and one dilation per stage')
    for index in out_indices:
        if index not in range(num_stages):
            raise ValueError(
                f'MetaResNet: out_indices must be stage indices in '
                f'range({num_stages}) (num_stages={num_stages}), got '
                f'{index!r} in {tuple(out_indices)}')
    if frozen_stages not in range(-1, num_stages + 1):
        raise ValueError(f'MetaResNet: frozen_stages must be in '
                         f'-1..{num_stages} (-1 freezes nothing), got '
                         f'{frozen_stages!r}')
    for name, value in (('in_channels', in_channels),
                        ('stem_channels', stem_channels),
                        ('base_channels', base_channels),
                        ('stem_kernel_size', stem_kernel_size),
                        ('stem_stride', stem_stride)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'MetaResNet: {name} must be a positive '
                             f'int, got {value!r}')
    plain = plain_resnet_cfg(
        depth, in_channels, stem_channels, base_channels, stem_kernel_size,
        stem_stride, stem_pool, num_stages=num_stages, strides=tuple(strides),
        dilations=tuple(dilations), out_indices=tuple(out_indices),
        frozen_stages=frozen_stages, norm_cfg=norm_cfg, norm_eval=norm_eval,
        with_cp=with_cp, zero_init_residual=zero_init_residual)
    return ScaleAdaptive(plain, train_sizes, 'all_but_stem', scale_encoding,
                         inference_mode, use_meta_network, meta_init, init_cfg)
