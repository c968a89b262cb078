"""What every scale-adaptive backbone shares: training sizes, the active resolution, the policy."""
import contextlib
import re
from typing import Iterator, List, Optional, Sequence

import torch.nn as nn
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils import (DEFAULT_TRAIN_SIZES, MetaConv2d, PrivateBatchNorm2d,
                     ScaleContext, ScaleEncoder, ScalePolicy, ScaleState,
                     check_inference_mode)
from ..utils.plain_init import init_weights_plain_last


class BaseScaleAdaptiveBackbone(BaseBackbone):
    """Base class of SAN backbones.

    Owns the :class:`ScaleContext` shared by all generated convs and private
    BNs, and sets it once per forward from the input's spatial size (the
    shorter side, so a plain forward at a training size uses that size's
    kernels and BN), unless a size is forced with :meth:`force_size`.

    Args:
        train_sizes (Sequence[int]): Training resolutions; any order, kept
            largest first (branch ``i`` is the ``i``-th largest).
        scale_encoding (dict): Keyword arguments of :class:`ScaleEncoder`
            (``max_encoding``, ``reference_size``). Defaults to the official
            ``0.7 * r / max(train_sizes)``.
        inference_mode (str): How sizes that were not trained on are run:
            ``proxy``, ``ideal``, ``calibrated`` or ``data_free``
            (see :mod:`san_mm.models.utils.scale_policy`).
        use_meta_network (bool): If False, every generated conv keeps one
            shared kernel (private BN only: the RS-Net-style ablation).
        init_cfg (dict | list[dict], optional): mmengine init config;
            ``dict(type='PretrainedFromPlain', checkpoint=..., prefix=
            'backbone.')`` starts from a plain ResNet / MobileNetV2.
    """

    def __init__(self,
                 train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
                 scale_encoding: Optional[dict] = None,
                 inference_mode: str = 'proxy',
                 use_meta_network: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg)
        self.scale_encoder = ScaleEncoder(train_sizes, **(scale_encoding or {}))
        self.train_sizes = self.scale_encoder.train_sizes
        self.scale_policy = ScalePolicy(self.scale_encoder, inference_mode)
        self.scale_context = ScaleContext()
        self.use_meta_network = bool(use_meta_network)
        self.forced_size: Optional[int] = None
        self._calibrating_size: Optional[int] = None

    def init_weights(self):
        init_weights_plain_last(self, super().init_weights)

    # ------------------------------------------------ freezing, norm_eval
    def stem_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages >= 0`` (the stem)."""
        raise NotImplementedError

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            for module in self.stem_modules():
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.check_checkpoint_compatible(
            [k[len(prefix):] for k in state_dict if k.startswith(prefix)])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check_checkpoint_compatible(self, keys) -> None:
        """Refuse a checkpoint built for other training sizes or without /
        with the meta network, before any tensor is copied (mmengine loads
        ``load_from`` and ``init_cfg`` checkpoints non-strictly, which would
        otherwise leave such a model half-initialised with a warning)."""
        set_indices = {int(m.group(1)) for k in keys
                       for m in [re.search(r'\.sets\.(\d+)\.', k)] if m}
        if set_indices and max(set_indices) + 1 != len(self.train_sizes):
            raise ValueError(
                f'checkpoint has {max(set_indices) + 1} private BN sets, but '
                f'this {type(self).__name__} has {len(self.train_sizes)} '
                f'training sizes {list(self.train_sizes)}: set train_sizes to '
                'the sizes the checkpoint was trained with')
        if keys and any(k.endswith('.weight') for k in keys):
            has_meta = any(k.endswith('weight_residual') for k in keys)
            if has_meta != self.use_meta_network:
                raise ValueError(
                    'checkpoint was trained with'
                    f'{"" if has_meta else "out"} the meta network '
                    '(weight_residual tensors), but this model has '
                    f'use_meta_network={self.use_meta_network}')

    # ------------------------------------------------------- input sizes
    @property
    def total_stride(self) -> int:
        """Downsampling factor from the input to the deepest output."""
        raise NotImplementedError

    @property
    def min_input_size(self) -> int:
        """Smallest input side this network accepts: ``total_stride // 2 + 1``.

        Padding lets any size run, but below this the input of the last
        stride-2 layer is 1x1, so that layer (and everything after it) sees
        one pixel surrounded by zero padding: numbers come out, features do
        not. E.g. 17 for ResNet / MobileNetV2 (stride 32), 9 for the
        Fashion-MNIST ResNet (3x3 stride-2 stem, no max-pool: stride 16).
        """
        return self.total_stride // 2 + 1

    def check_size_fits(self, size: int, name: str = 'input size') -> None:
        """Raise ``ValueError`` naming ``size`` if it is below
        :attr:`min_input_size`."""
        if size < self.min_input_size:
            raise ValueError(
                f'{name} {size} is too small for this {type(self).__name__}: '
                f'its total stride is {self.total_stride}, so every size must '
                f'be at least {self.min_input_size} (smaller, and the last '
                'stride-2 layer gets a 1x1 map of padding around one pixel)')

    def _check_train_sizes_fit(self) -> None:
        for size in self.train_sizes:
            self.check_size_fits(size, 'training size')

    # ------------------------------------------------------ layer factories
    def _meta_conv(self, in_channels, out_channels, kernel_size, **kwargs):
        return MetaConv2d(in_channels, out_channels, kernel_size,
                          self.scale_context, meta=self.use_meta_network,
                          meta_init=self.meta_init, **kwargs)

    def _private_bn(self, num_features):
        return PrivateBatchNorm2d(num_features, len(self.train_sizes),
                                  self.scale_context, self.norm_cfg)

    # ----------------------------------------------------- active resolution
    @property
    def inference_mode(self) -> str:
        return self.scale_policy.mode

    @inference_mode.setter
    def inference_mode(self, mode: str) -> None:
        self.scale_policy.mode = check_inference_mode(mode)

    @property
    def calibrated_sizes(self) -> List[int]:
        """Sizes for which every private BN holds calibrated statistics."""
        sizes = None
        for module in self.private_bns():
            own = set(module.calibrated_sizes)
            sizes = own if sizes is None else sizes & own
        return sorted(sizes or ())

    def private_bns(self) -> Iterator[PrivateBatchNorm2d]:
        return (m for m in self.modules() if isinstance(m, PrivateBatchNorm2d))

    def meta_convs(self) -> Iterator[MetaConv2d]:
        return (m for m in self.modules() if isinstance(m, MetaConv2d))

    @contextlib.contextmanager
    def force_size(self, size: int):
        """Run every forward inside the block as if the input were ``size``
        pixels (for tools and tests; e.g. a non-square input)."""
        self.scale_encoder.encode(size)  # validates
        previous, self.forced_size = self.forced_size, int(size)
        try:
            yield self
        finally:
            self.forced_size = previous

    @contextlib.contextmanager
    def calibrating(self, size: int):
        """Inside the block, forwards at ``size`` normalise with batch
        statistics and accumulate them as calibrated BN statistics for
        ``size`` (post-hoc BN calibration; see :class:`PrivateBatchNorm2d`)."""
        self.scale_encoder.encode(size)  # validates
        for module in self.private_bns():
            module.reset_calibration(size)
        previous, self._calibrating_size = self._calibrating_size, int(size)
        try:
            yield self
        finally:
            self._calibrating_size = previous

    def resolve_scale(self, size: int) -> ScaleState:
        """The :class:`ScaleState` a forward at ``size`` would use now."""
        if size == self._calibrating_size:
            return self.scale_policy.calibration_state(size)
        # Walking every private BN for its calibrated sizes is only needed
        # for unseen sizes in calibrated mode.
        needs_calibrated = (self.inference_mode == 'calibrated'
                            and size not in self.train_sizes)
        return self.scale_policy.resolve(
            size, training=self.training,
            calibrated_sizes=self.calibrated_sizes if needs_calibrated else ())

    def activate_scale(self, x: Tensor) -> ScaleState:
        """Set the shared scale state for input ``x`` (N, C, H, W)."""
        if x.dim() != 4:
            raise ValueError('expected an image batch of shape (N, C, H, W), '
                             f'got shape {tuple(x.shape)}')
        input_size = min(x.shape[-2:])
        if input_size < self.min_input_size:
            self.check_size_fits(int(input_size),
                                 f'input of shape {tuple(x.shape)}: size')
        size = self.forced_size or input_size
        state = self.resolve_scale(int(size))
        self.scale_context.state = state
        return state
