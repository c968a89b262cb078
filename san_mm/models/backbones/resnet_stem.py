"""A plain mmpretrain ResNet whose stem (kernel, stride, max-pool) is configurable."""
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmpretrain.models.backbones import ResNet
from mmpretrain.registry import MODELS


@MODELS.register_module()
class ResNetCustomStem(ResNet):
    """mmpretrain's ``ResNet`` with the stem conv's kernel and stride and the
    max-pool after it as arguments, for small images. ``(7, 2, True)`` is
    ``ResNet``, ``(3, 1, False)`` is ``ResNet_CIFAR``; the Fashion-MNIST
    configs use ``(3, 2, False)`` (28 px images, total stride 16). Module
    names are ``ResNet``'s.

    Args:
        depth (int): Network depth, from {18, 34, 50, 101, 152}.
        stem_kernel_size (int): Kernel of the stem conv. Defaults to 7.
        stem_stride (int): Stride of the stem conv. Defaults to 2.
        stem_pool (bool): Max-pool (3x3, stride 2) after the stem. Defaults
            to True.
        **kwargs: ``ResNet``'s other arguments (``deep_stem`` excepted).

    Example:
        >>> import torch
        >>> from san_mm.models import ResNetCustomStem
        >>> net = ResNetCustomStem(18, in_channels=1, stem_channels=16,
        ...                        base_channels=16, stem_kernel_size=3,
        ...                        stem_pool=False)
        >>> net.eval()
        >>> tuple(net(torch.rand(1, 1, 28, 28))[-1].shape)
        (1, 128, 2, 2)
    """

    def __init__(self, depth: int, stem_kernel_size: int = 7,
                 stem_stride: int = 2, stem_pool: bool = True, **kwargs):
        if kwargs.get('deep_stem'):
            raise ValueError('ResNetCustomStem configures a one-conv stem; '
                             'for the deep stem use ResNetV1c / ResNetV1d')
        for name, value in (('stem_kernel_size', stem_kernel_size),
                            ('stem_stride', stem_stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'ResNetCustomStem: {name} must be a '
                                 f'positive int, got {value!r}')
        self.stem_kernel_size = stem_kernel_size
        self.stem_stride = stem_stride
        self.stem_pool = bool(stem_pool)
        super().__init__(depth, **kwargs)

    def _make_stem_layer(self, in_channels, stem_channels):
        self.conv1 = build_conv_layer(
            self.conv_cfg, in_channels, stem_channels,
            kernel_size=self.stem_kernel_size, stride=self.stem_stride,
            padding=self.stem_kernel_size // 2, bias=False)
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels,
                                                  postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) \
            if self.stem_pool else nn.Identity()
