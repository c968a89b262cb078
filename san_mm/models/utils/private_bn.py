"""Private batch normalisation: one BN per training resolution.

Activation statistics differ strongly between resolutions, so every BN of a SAN network is
replaced by K independent BNs (own affine parameters and running statistics); branch ``i`` (the
``i``-th largest training size) uses set ``i``. For resolutions that were never trained on, this
module also implements what the inference modes need: linear interpolation of two neighbouring
sets (data-free) and statistics calibrated for an extra resolution (post-hoc BN calibration),
stored under ``calibrated.<size>`` so they travel with checkpoints.
"""
import copy
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from .derived_cache import DerivedTensorCacheMixin
from .scale_policy import ScaleContext


class PrivateBatchNorm2d(DerivedTensorCacheMixin, nn.Module):
    """K private BatchNorm layers, selected by the active resolution.

    Args:
        num_features (int): Channels.
        num_sets (int): Number of training sizes K.
        scale_context (ScaleContext): Shared holder of the active resolution.
        norm_cfg (dict): Config of each private norm layer (any mmcv norm
            with running statistics; ``SyncBN`` works too). Defaults to
            ``dict(type='BN')``.

    Shape:
        - Input: :math:`(N, C, H, W)`; Output: same.

    Example:
        >>> from san_mm.models.utils import (PrivateBatchNorm2d, ScaleContext,
        ...                                  ScaleState, BNSelection)
        >>> ctx = ScaleContext()
        >>> bn = PrivateBatchNorm2d(16, num_sets=5, scale_context=ctx)
        >>> ctx.state = ScaleState(160, 0.5, BNSelection('set', 2))
        >>> bn(torch.rand(4, 16, 8, 8)).shape   # updates bn.sets[2] only
        torch.Size([4, 16, 8, 8])
    """

    derived_cache_attrs = dict(_blend_cache=dict)

    def __init__(self,
                 num_features: int,
                 num_sets: int,
                 scale_context: ScaleContext,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if not isinstance(num_sets, int) or num_sets < 1:
            raise ValueError(f'num_sets must be a positive int, got {num_sets!r}')
        self.num_features = num_features
        self.scale_context = scale_context
        self.sets = nn.ModuleList(
            build_norm_layer(norm_cfg, num_features)[1]
            for _ in range(num_sets))
        self.calibrated = nn.ModuleDict()
        self._blend_cache: Dict[tuple, tuple] = {}

    @classmethod
    def from_bn(cls, bn: _BatchNorm, num_sets: int,
                scale_context: ScaleContext) -> 'PrivateBatchNorm2d':
        """K private copies of ``bn`` (same class, eps, momentum, affine,
        tensors), in its place."""
        new = cls(bn.num_features, 1, scale_context)
        new.sets = nn.ModuleList(copy.deepcopy(bn) for _ in range(num_sets))
        return new

    @property
    def num_sets(self) -> int:
        return len(self.sets)

    @property
    def calibrated_sizes(self) -> List[int]:
        return sorted(int(key) for key in self.calibrated.keys())

    # --------------------------------------------------------- selection
    def forward(self, x: Tensor) -> Tensor:
        selection = self.scale_context.require_state(self).bn
        if selection.kind == 'set':
            # The eval fast path (docs/design.md): the set's tensors, read from
            # the modules' dicts, straight into F.batch_norm as BatchNorm2d's
            # eval forward does, without a second module call.
            bn = self.sets._modules[str(selection.index)]
            buffers, params = bn._buffers, bn._parameters
            if (bn.training or buffers.get('running_mean') is None
                    or bn._forward_hooks or bn._forward_pre_hooks):
                return bn(x)
            return F.batch_norm(x, buffers['running_mean'],
                                buffers['running_var'], params.get('weight'),
                                params.get('bias'), False, 0.0, bn.eps)
        if selection.kind == 'interpolate':
            return self._interpolated_forward(x, selection.index,
                                              selection.upper_index,
                                              selection.alpha)
        if selection.kind == 'calibrated':
            stats = self.calibrated[str(selection.size)]
            affine = self.sets[selection.index]
            return F.batch_norm(x, stats.running_mean, stats.running_var,
                                affine.weight, affine.bias, False, 0.0,
                                affine.eps)
        if selection.kind == 'calibrating':
            return self._calibrating_forward(x, selection.index,
                                             selection.size)
        raise ValueError(f'unknown BN selection {selection.kind!r}')

    def interpolated_parameters(self, lower: int, upper: int,
                                alpha: float) -> Dict[str, Tensor]:
        """``alpha * BN_upper + (1 - alpha) * BN_lower`` for affine parameters
        and running statistics (data-free BN for an unseen resolution)."""
        low, high = self.sets[lower], self.sets[upper]
        blended = {}
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            a, b = getattr(low, name), getattr(high, name)
            if a is None:
                blended[name] = None
            else:
                blended[name] = torch.lerp(a, b, alpha)
        blended['eps'] = low.eps
        return blended

    def _interpolated_forward(self, x, lower, upper, alpha):
        p = self._cached_interpolation(lower, upper, alpha)
        if p['running_mean'] is None:
            raise RuntimeError(
                'data-free BN interpolation needs running statistics, but '
                'the BN was built with track_running_stats=False: remove it '
                "from norm_cfg, or use inference_mode='proxy' / 'ideal'")
        return F.batch_norm(x, p['running_mean'], p['running_var'],
                            p['weight'], p['bias'], False, 0.0, p['eps'])

    def _cached_interpolation(self, lower, upper, alpha):
        """:meth:`interpolated_parameters`, blended once per (lower, upper,
        alpha) in eval and reused while no gradient can flow into the blend
        and both sets' tensors are unchanged (version counters and data
        pointers, as the kernel cache of ``MetaConv2d``); under
        ``torch.compile`` the blend is part of the graph."""
        if self.training or torch.compiler.is_compiling():
            return self.interpolated_parameters(lower, upper, alpha)
        low, high = self.sets[lower], self.sets[upper]
        tensors = [getattr(m, name) for m in (low, high)
                   for name in ('weight', 'bias', 'running_mean', 'running_var')]
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in tensors):
            return self.interpolated_parameters(lower, upper, alpha)
        stamp = tuple((t._version, t.data_ptr()) if t is not None else None
                      for t in tensors) + (low.eps, )
        key = (lower, upper, float(alpha))
        cached = self._blend_cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with torch.no_grad():
            blended = self.interpolated_parameters(lower, upper, alpha)
        if len(self._blend_cache) >= 32:  # unseen sizes served at once
            self._blend_cache.clear()
        self._blend_cache[key] = (stamp, blended)
        return blended

    # -------------------------------------------------------- calibration
    def reset_calibration(self, size: int) -> None:
        """Create (or clear) the calibrated statistics for ``size``."""
        reference = self.sets[0]
        stats = nn.BatchNorm2d(self.num_features, eps=reference.eps,
                               momentum=None, affine=False).to(
                                   reference.running_mean.device)
        self.calibrated[str(size)] = stats

    def remove_calibration(self, size: int) -> None:
        """Drop the calibrated statistics for ``size`` (if any)."""
        if str(size) in self.calibrated:
            del self.calibrated[str(size)]

    def _calibrating_forward(self, x, index, size):
        """Normalise with batch statistics and accumulate a cumulative average
        of them for ``size`` (momentum None); affine from the proxy set."""
        key = str(size)
        if key not in self.calibrated:
            self.reset_calibration(size)
        stats = self.calibrated[key]
        affine = self.sets[index]
        stats.num_batches_tracked.add_(1)
        momentum = 1.0 / float(stats.num_batches_tracked)
        return F.batch_norm(x, stats.running_mean, stats.running_var,
                            affine.weight, affine.bias, True, momentum,
                            stats.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Calibrated statistics are created on demand; make room for those in
        # the checkpoint so they load into a freshly built network.
        marker = prefix + 'calibrated.'
        for key in state_dict:
            if key.startswith(marker) and key.endswith('.running_mean'):
                size = key[len(marker):-len('.running_mean')]
                if size.isdigit() and size not in self.calibrated:
                    self.reset_calibration(int(size))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f'num_features={self.num_features}, num_sets={self.num_sets}'
