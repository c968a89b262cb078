"""MetaMobileNetV2: MobileNetV2 whose every convolution is generated from the scale encoding.

Mirrors mmpretrain's ``MobileNetV2`` module names (``conv1.conv``/``conv1.bn``,
``layerN.i.conv.j.conv``/``.bn``, ``conv2``) so conversion to a plain model is a selection. As in the
reference, every conv is generated (the 3x3 stem and the final 1x1 to 1280 included) and every BN is
private; only the classifier (in the head) is shared.
"""
from typing import Optional, Sequence

import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmpretrain.models.utils import make_divisible
from mmpretrain.registry import MODELS

from ..utils import DEFAULT_TRAIN_SIZES
from .base_san import BaseScaleAdaptiveBackbone


class MetaConvModule(nn.Module):
    """Generated conv + private BN + optional activation; the SAN counterpart
    of mmcv's ``ConvModule`` (same child names: ``conv``, ``bn``,
    ``activate``)."""

    def __init__(self, backbone, in_channels, out_channels, kernel_size,
                 stride=1, padding=0, groups=1, act_cfg=dict(type='ReLU6')):
        super().__init__()
        self.conv = backbone._meta_conv(in_channels, out_channels, kernel_size,
                                        stride=stride, padding=padding,
                                        groups=groups)
        self.bn = backbone._private_bn(out_channels)
        self.with_activation = act_cfg is not None
        if self.with_activation:
            # in place, as mmcv's ConvModule builds it (no extra tensor)
            act_cfg = dict(act_cfg)
            if act_cfg['type'] not in ('Tanh', 'PReLU', 'Sigmoid', 'HSigmoid',
                                       'Swish', 'GELU'):
                act_cfg.setdefault('inplace', True)
            self.activate = build_activation_layer(act_cfg)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.activate(x) if self.with_activation else x


class MetaInvertedResidual(nn.Module):
    """Inverted residual block (expand 1x1, depthwise 3x3, linear 1x1)."""

    def __init__(self, backbone, in_channels, out_channels, stride,
                 expand_ratio, act_cfg=dict(type='ReLU6'), with_cp=False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError('MobileNetV2 block stride must be 1 or 2, got '
                             f'{stride!r}')
        self.stride = stride
        self.with_cp = with_cp
        backbone.scale_context.hold_in(self)  # gradient checkpointing reads it
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(MetaConvModule(backbone, in_channels, hidden, 1,
                                         act_cfg=act_cfg))
        layers += [
            MetaConvModule(backbone, hidden, hidden, 3, stride=stride,
                           padding=1, groups=hidden, act_cfg=act_cfg),
            MetaConvModule(backbone, hidden, out_channels, 1, act_cfg=None),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        def _inner_forward(x):
            out = self.conv(x)
            return x + out if self.use_res_connect else out

        if self.with_cp and x.requires_grad:
            return self.scale_context.checkpoint(self, _inner_forward, x)
        return _inner_forward(x)


@MODELS.register_module()
class MetaMobileNetV2(BaseScaleAdaptiveBackbone):
    """Scale-adaptive MobileNetV2 (SAN, ECCV 2020).

    Args:
        widen_factor (float): Width multiplier. Defaults to 1.0.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Output from which stages (0-7, 7 is the
            final 1x1 conv). Defaults to ``(7, )``.
        frozen_stages (int): Stages to freeze; -1 freezes nothing.
        norm_cfg (dict): Config of each private norm layer.
        act_cfg (dict): Activation config. Defaults to ReLU6.
        norm_eval (bool): Keep every BN in eval mode while training.
        with_cp (bool): Gradient checkpointing inside blocks.
        train_sizes (Sequence[int]): Training resolutions.
        scale_encoding (dict, optional): :class:`ScaleEncoder` arguments.
        inference_mode (str): Mode for sizes not trained on.
        use_meta_network (bool): Generate kernels (True) or share them.
        meta_init (str): Initialisation of generated convs; the reference's
            ``'mobilenet_v2'`` (A ~ N(0, 0.01), B = 0) by default.
        init_cfg (dict | list[dict], optional): mmengine init config.

    Example:
        >>> import torch
        >>> from san_mm.models import MetaMobileNetV2
        >>> net = MetaMobileNetV2(widen_factor=0.25).eval()
        >>> tuple(net(torch.rand(1, 3, 96, 96))[-1].shape)
        (1, 1280, 3, 3)
    """

    # expand_ratio, channels, num_blocks, stride
    arch_settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2],
                     [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                     [6, 320, 1, 1]]

    def __init__(self,
                 widen_factor: float = 1.,
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
        super().__init__(train_sizes, scale_encoding, inference_mode,
                         use_meta_network, init_cfg)
        if not widen_factor > 0:
            raise ValueError('MetaMobileNetV2: widen_factor must be '
                             f'positive (1.0 is the standard width), got '
                             f'{widen_factor!r}')
        for index in out_indices:
            if index not in range(0, 8):
                raise ValueError('MetaMobileNetV2: out_indices must be in '
                                 'range(0, 8) (7 is the last 1x1 conv), got '
                                 f'{index!r} in {tuple(out_indices)}')
        if frozen_stages not in range(-1, 8):
            raise ValueError('MetaMobileNetV2: frozen_stages must be in '
                             f'-1..7 (-1 freezes nothing), got '
                             f'{frozen_stages!r}')
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.meta_init = meta_init

        channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = MetaConvModule(self, in_channels, channels, 3, stride=2,
                                    padding=1, act_cfg=act_cfg)
        self.layers = []
        for i, (expand_ratio, width, num_blocks,
                stride) in enumerate(self.arch_settings):
            out_channels = make_divisible(width * widen_factor, 8)
            blocks = []
            for j in range(num_blocks):
                blocks.append(
                    MetaInvertedResidual(self, channels, out_channels,
                                         stride if j == 0 else 1,
                                         expand_ratio, act_cfg, with_cp))
                channels = out_channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.layers.append(f'layer{i + 1}')
        self.out_channel = int(1280 * widen_factor) if widen_factor > 1.0 \
            else 1280
        self.conv2 = MetaConvModule(self, channels, self.out_channel, 1,
                                    act_cfg=act_cfg)
        self.layers.append('conv2')
        self._freeze_stages()
        self.layers = tuple(self.layers)  # immutable: see ScaleEncoder
        self._settle_input_sizes()

    @property
    def total_stride(self) -> int:
        stride = 2  # the stem conv
        for _, _, _, layer_stride in self.arch_settings[:max(self.out_indices) + 1]:
            stride *= layer_stride
        return stride

    def forward(self, x):
        self.activate_scale(x)
        x = self.conv1(x)
        outs = []
        for i, layer_name in enumerate(self.layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return self.leave_scale(tuple(outs))

    def stem_modules(self):
        return [self.conv1]
