"""MetaResNet: ResNet whose block convolutions are generated from the scale encoding.

Mirrors mmpretrain's ``ResNet`` module names (``conv1``/``bn1`` stem, ``layerN.i.conv1``/``bn1``,
``downsample.0``/``downsample.1``) so a SAN network at one resolution converts to a plain
mmpretrain ResNet by selecting tensors, not by translating a layout.

What is generated follows the reference: every conv inside the residual blocks, the 1x1 projection
shortcut included; the 7x7 stem conv is shared by all sizes (the classifier FC lives in the head
and is shared too). Every BN, the stem BN included, is private per training size.
"""
from typing import Optional, Sequence

import torch.nn as nn
from mmpretrain.registry import MODELS

from ..utils import DEFAULT_TRAIN_SIZES
from .base_san import BaseScaleAdaptiveBackbone


class MetaBasicBlock(nn.Module):
    """BasicBlock (two 3x3 convs) with generated kernels and private BN."""
    expansion = 1

    def __init__(self, backbone, in_channels, out_channels, stride=1,
                 dilation=1, downsample=None, with_cp=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = out_channels // self.expansion
        self.with_cp = with_cp
        backbone.scale_context.hold_in(self)  # gradient checkpointing reads it
        self.conv1 = backbone._meta_conv(in_channels, self.mid_channels, 3,
                                         stride=stride, padding=dilation,
                                         dilation=dilation)
        self.bn1 = backbone._private_bn(self.mid_channels)
        self.conv2 = backbone._meta_conv(self.mid_channels, out_channels, 3,
                                         padding=1)
        self.bn2 = backbone._private_bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x):
        def _inner_forward(x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self._residual(x)
            out += identity  # in place, as mmpretrain's blocks: no new tensor
            return out

        if self.with_cp and x.requires_grad:
            out = self.scale_context.checkpoint(self, _inner_forward, x)
        else:
            out = _inner_forward(x)
        return self.relu(out)


class MetaBottleneck(MetaBasicBlock):
    """Bottleneck (1x1, 3x3 with the stride, 1x1) with generated kernels and
    private BN ("pytorch" style, as the reference and torchvision)."""
    expansion = 4

    def __init__(self, backbone, in_channels, out_channels, stride=1,
                 dilation=1, downsample=None, with_cp=False):
        nn.Module.__init__(self)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = out_channels // self.expansion
        self.with_cp = with_cp
        backbone.scale_context.hold_in(self)  # as above
        mid = self.mid_channels
        self.conv1 = backbone._meta_conv(in_channels, mid, 1)
        self.bn1 = backbone._private_bn(mid)
        self.conv2 = backbone._meta_conv(mid, mid, 3, stride=stride,
                                         padding=dilation, dilation=dilation)
        self.bn2 = backbone._private_bn(mid)
        self.conv3 = backbone._meta_conv(mid, out_channels, 1)
        self.bn3 = backbone._private_bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


@MODELS.register_module()
class MetaResNet(BaseScaleAdaptiveBackbone):
    """Scale-adaptive ResNet (SAN, ECCV 2020).

    Args:
        depth (int): Network depth, from {18, 34, 50, 101, 152}.
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int): Output channels of the stem. Defaults to 64.
        stem_kernel_size (int): Kernel of the (shared) stem conv. Defaults
            to 7 (ImageNet); small images use 3.
        stem_stride (int): Stride of the stem conv. Defaults to 2.
        stem_pool (bool): Max-pool after the stem. Defaults to True; small
            images (CIFAR, Fashion-MNIST) usually go without, as mmpretrain's
            ``ResNet_CIFAR``.
        base_channels (int): Channels of the first stage (before expansion).
            Defaults to 64.
        num_stages (int): Stages of the network (1-4). Defaults to 4.
        strides (Sequence[int]): Stride of the first block of each stage.
            Defaults to ``(1, 2, 2, 2)``.
        dilations (Sequence[int]): Dilation of each stage.
        out_indices (Sequence[int]): Output from which stages. Defaults to
            ``(3, )``.
        frozen_stages (int): Stages to freeze (stop grad and eval mode); -1
            freezes nothing, 0 the stem.
        norm_cfg (dict): Config of each private norm layer.
        norm_eval (bool): Keep every BN in eval mode while training.
        with_cp (bool): Gradient checkpointing inside blocks.
        zero_init_residual (bool): Zero the last BN of every block at init.
            Defaults to False (the reference does not).
        train_sizes (Sequence[int]): Training resolutions.
            Defaults to 224/192/160/128/96.
        scale_encoding (dict, optional): :class:`ScaleEncoder` arguments.
        inference_mode (str): Mode for sizes not trained on. Defaults to
            ``'proxy'``.
        use_meta_network (bool): Generate block kernels (True) or share them
            across sizes (False, the no-meta-network ablation).
        meta_init (str): Initialisation of generated convs, see
            :data:`san_mm.models.utils.META_INITS`. Defaults to the
            reference's ``'resnet'``.
        init_cfg (dict | list[dict], optional): mmengine init config (e.g.
            ``dict(type='Pretrained', checkpoint=...)``).

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

    arch_settings = {
        18: (MetaBasicBlock, (2, 2, 2, 2)),
        34: (MetaBasicBlock, (3, 4, 6, 3)),
        50: (MetaBottleneck, (3, 4, 6, 3)),
        101: (MetaBottleneck, (3, 4, 23, 3)),
        152: (MetaBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 depth: int,
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
        super().__init__(train_sizes, scale_encoding, inference_mode,
                         use_meta_network, init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth!r} for MetaResNet; expected '
                           f'one of {sorted(self.arch_settings)} (set '
                           'model.backbone.depth)')
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
        self.depth = depth
        self.stem_channels = stem_channels
        self.stem_kernel_size = stem_kernel_size
        self.stem_stride = stem_stride
        self.stem_pool = stem_pool
        self.base_channels = base_channels
        self.num_stages = num_stages
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual
        self.meta_init = meta_init
        self.block, stage_blocks = self.arch_settings[depth]
        self.stage_blocks = stage_blocks[:num_stages]
        self.expansion = self.block.expansion

        # Stem: the conv is shared by all sizes (reference), its BN is private.
        self.conv1 = nn.Conv2d(in_channels, stem_channels, stem_kernel_size,
                               stride=stem_stride,
                               padding=stem_kernel_size // 2, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode='fan_out',
                                nonlinearity='relu')
        self.bn1 = self._private_bn(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) \
            if stem_pool else nn.Identity()

        self.res_layers = []
        block_in = stem_channels
        block_out = base_channels * self.expansion
        for i, num_blocks in enumerate(self.stage_blocks):
            layer = self._make_res_layer(num_blocks, block_in, block_out,
                                         self.strides[i], self.dilations[i])
            layer_name = f'layer{i + 1}'
            self.add_module(layer_name, layer)
            self.res_layers.append(layer_name)
            block_in = block_out
            block_out *= 2
        self.feat_dim = block_in
        if zero_init_residual:
            self._zero_init_residual()
        self._freeze_stages()
        self.res_layers = tuple(self.res_layers)  # immutable: see ScaleEncoder
        self._settle_input_sizes()

    @property
    def total_stride(self) -> int:
        stride = self.stem_stride * (2 if self.stem_pool else 1)
        for i in range(max(self.out_indices) + 1):
            stride *= self.strides[i]
        return stride

    @property
    def norm1(self):
        return self.bn1

    def _make_res_layer(self, num_blocks, in_channels, out_channels, stride,
                        dilation):
        downsample = None
        if stride != 1 or in_channels != out_channels:
            # Projection shortcut: generated too, with its own private BN.
            downsample = nn.Sequential(
                self._meta_conv(in_channels, out_channels, 1, stride=stride),
                self._private_bn(out_channels))
        blocks = [
            self.block(self, in_channels, out_channels, stride, dilation,
                       downsample, self.with_cp)
        ]
        for _ in range(1, num_blocks):
            blocks.append(
                self.block(self, out_channels, out_channels, 1, dilation,
                           None, self.with_cp))
        return nn.Sequential(*blocks)

    def _zero_init_residual(self):
        for module in self.modules():
            if isinstance(module, MetaBasicBlock):
                last_bn = module.bn3 if isinstance(
                    module, MetaBottleneck) else module.bn2
                for bn in last_bn.sets:
                    nn.init.zeros_(bn.weight)

    def stem_modules(self):
        return [self.conv1, self.bn1]

    def forward(self, x):
        self.activate_scale(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return self.leave_scale(tuple(outs))
