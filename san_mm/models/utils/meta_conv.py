"""Generated convolution: the kernel is produced from the scale encoding, W(s) = B + s * A.

In the reference implementation each generated conv owns a meta network ``Linear(1, numel(W))``
whose weight is the flattened residual A and whose bias is the flattened base B. Storing A and B
directly in kernel shape is the same function and the same parameters (2x the kernel), without
reshapes on the hot path; ``weight`` holds B so that the module's state dict is a superset of a
plain ``nn.Conv2d``'s (conversion to and from plain models is a rename at most).
"""
import math
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .derived_cache import DerivedTensorCacheMixin
from .scale_policy import ScaleContext

#: How A and B start.
#: ``plain``: B as the plain convolution it replaces (or ``nn.Conv2d``'s default), A = 0: the
#: network starts as the plain network at every size.
#: ``kaiming``: B ~ Kaiming normal (fan_out), A = 0.
#: ``resnet``: the reference's ResNet, PyTorch's default ``Linear(1, N)`` init: A, B ~ U(-1, 1).
#: ``mobilenet_v2``: the reference's MobileNetV2, every Linear ~ N(0, 0.01) with zero bias:
#: A ~ N(0, 0.01), B = 0.
META_INITS = ('plain', 'kaiming', 'resnet', 'mobilenet_v2')


def check_meta_init(meta_init: str) -> str:
    if meta_init not in META_INITS:
        raise ValueError(
            f'unknown meta_init {meta_init!r}; expected one of '
            f"{list(META_INITS)}: 'plain' starts from the plain network's "
            "own initialisation (A = 0), 'resnet' / 'mobilenet_v2' are the "
            "reference's")
    return meta_init


class MetaConv2d(DerivedTensorCacheMixin, nn.Conv2d):
    """A convolution whose kernel is generated from the active scale encoding.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
            groups, bias, padding_mode: As in :class:`torch.nn.Conv2d`. A
            bias is shared by all sizes (not generated).
        scale_context (ScaleContext): Shared holder of the active resolution
            (set by the owning backbone in each forward).
        meta (bool): If False the kernel is shared across sizes (no residual
            A): the "no meta network" ablation. Defaults to True.
        meta_init (str): One of :data:`META_INITS`. Defaults to ``'plain'``.
        adaptive_padding (bool): Pad the input as mmcv's
            ``Conv2dAdaptivePadding`` (TensorFlow's "same"). Defaults to False.
        cache_size (int): How many eval-mode kernels to keep (one per
            encoding). Defaults to 32.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H', W')`
        - ``weight`` (B) and ``weight_residual`` (A):
          :math:`(C_{out}, C_{in} / groups, k_h, k_w)`

    Example:
        >>> from san_mm.models.utils import ScaleContext, MetaConv2d
        >>> conv = MetaConv2d(8, 16, 3, ScaleContext(), padding=1)
        >>> kernel = conv.generate_kernel(0.5)   # B + 0.5 * A
        >>> tuple(kernel.shape)
        (16, 8, 3, 3)
    """

    derived_cache_attrs = dict(_kernel_cache=OrderedDict,
                               _cache_stamp=lambda: None,
                               _step_kernels=lambda: None)

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 scale_context: ScaleContext,
                 stride=1,
                 padding=0,
                 dilation=1,
                 groups: int = 1,
                 bias: bool = False,
                 padding_mode: str = 'zeros',
                 meta: bool = True,
                 meta_init: str = 'plain',
                 adaptive_padding: bool = False,
                 cache_size: int = 32,
                 device=None,
                 dtype=None):
        if not isinstance(scale_context, ScaleContext):
            raise TypeError('scale_context must be a ScaleContext, got '
                            f'{type(scale_context).__name__}')
        self.meta = bool(meta)
        self.meta_init = check_meta_init(meta_init)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, dilation=dilation, groups=groups,
                         bias=bias, padding_mode=padding_mode, device=device,
                         dtype=dtype)
        self.scale_context = scale_context
        self.adaptive_padding = bool(adaptive_padding)
        self.cache_size = cache_size
        if self.meta:
            self.weight_residual = nn.Parameter(torch.zeros_like(self.weight))
        else:
            self.register_parameter('weight_residual', None)
        self.clear_derived_cache()
        self.init_meta()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, scale_context: ScaleContext,
                  meta: bool = True, meta_init: str = 'plain',
                  adaptive_padding: bool = False) -> 'MetaConv2d':
        """A generated conv in place of ``conv``: same shape and settings,
        B = ``conv``'s weight, its bias shared; A as ``meta_init`` says."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                  scale_context, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  meta=meta, meta_init=meta_init,
                  adaptive_padding=adaptive_padding, device='meta')
        new.weight, new.bias = conv.weight, conv.bias  # the same Parameters
        if meta:
            new.weight_residual = nn.Parameter(torch.zeros_like(conv.weight))
        new.init_meta()
        return new

    # ------------------------------------------------------------------ init
    def init_meta(self) -> None:
        """Initialise A (and B, for the reference's inits) as ``meta_init``
        says; ``'plain'`` keeps B as it is."""
        residual = self.weight_residual
        with torch.no_grad():
            if self.meta_init == 'resnet':
                nn.init.uniform_(self.weight, -1.0, 1.0)
                if residual is not None:
                    nn.init.uniform_(residual, -1.0, 1.0)
            elif self.meta_init == 'mobilenet_v2':
                if residual is not None:
                    nn.init.zeros_(self.weight)
                    nn.init.normal_(residual, 0.0, 0.01)
                else:  # shared conv: nothing to generate from
                    nn.init.normal_(self.weight, 0.0, 0.01)
            else:
                if self.meta_init == 'kaiming':
                    nn.init.kaiming_normal_(self.weight, mode='fan_out',
                                            nonlinearity='relu')
                if residual is not None:
                    nn.init.zeros_(residual)
        self.clear_derived_cache()

    # ------------------------------------------------------------- kernels
    def generate_kernel(self, encoding: float) -> Tensor:
        """The kernel for one encoding: ``B + encoding * A``."""
        if self.weight_residual is None:
            return self.weight
        return torch.add(self.weight, self.weight_residual, alpha=encoding)

    def generate_kernels(self, encodings) -> Tensor:
        """Kernels for several encodings in one batched operation.

        Args:
            encodings (Sequence[float] | Tensor): ``E`` encodings.

        Returns:
            Tensor: :math:`(E, C_{out}, C_{in} / groups, k_h, k_w)`.
        """
        encodings = torch.as_tensor(encodings, dtype=self.weight.dtype,
                                    device=self.weight.device).reshape(-1)
        base = self.weight.unsqueeze(0)
        if self.weight_residual is None:
            return base.expand(encodings.numel(), *self.weight.shape)
        scales = encodings.reshape(-1, *([1] * self.weight.dim()))
        weight, residual = self.weight, self.weight_residual
        if (not weight.is_contiguous()
                and weight.is_contiguous(memory_format=torch.channels_last)):
            # Each kernel channels-last like the weights (as B + s * A is).
            made = torch.addcmul(weight.permute(0, 2, 3, 1).unsqueeze(0),
                                 scales,
                                 residual.permute(0, 2, 3, 1).unsqueeze(0))
            return made.permute(0, 1, 4, 2, 3)
        return torch.addcmul(base, scales, residual.unsqueeze(0))

    def set_step_kernels(self, encodings: Sequence[float],
                         scales: Optional[Tensor] = None) -> None:
        """Generate the kernels of every encoding of one training step in
        one batched op for the forwards that follow (one per encoding);
        :meth:`clear_step_kernels` ends the step. With one joint backward
        this is the same function as generating at each forward, with fewer
        operations to launch. ``scales``: the encodings as a tensor on the
        kernel's device (made from a list on CUDA, it would synchronise)."""
        if self.weight_residual is None:
            return
        encodings = [float(e) for e in encodings]
        kernels = self.generate_kernels(encodings if scales is None else scales)
        self._step_kernels = dict(zip(encodings, kernels.unbind(0)))

    def clear_step_kernels(self) -> None:
        self._step_kernels = None

    def kernel_for(self, encoding: float) -> Tensor:
        """The kernel for ``encoding``.

        Under ``torch.compile`` the graph computes ``B + s * A`` (with
        inductor's freezing, it folds it into a constant). Eagerly, within a
        training step whose kernels were batched (:meth:`set_step_kernels`),
        that step's kernel; when no gradient can flow into it (eval mode with
        grad disabled or frozen parameters), a cached kernel, dropped as soon
        as the parameters may have changed: in-place updates (optimiser
        steps, ``load_state_dict``) bump their version counters, a replaced
        tensor changes its data pointer, and ``train()``, ``.to()`` and
        ``load_state_dict`` clear the cache (:class:`DerivedTensorCacheMixin`).
        """
        # The tensors from the module's dict, not Module.__getattr__: part of
        # the eval fast path (docs/design.md).
        params = self._parameters
        weight, residual = params['weight'], params['weight_residual']
        if residual is None:
            return weight
        if torch.compiler.is_compiling():
            return self.generate_kernel(encoding)
        if self._step_kernels is not None:
            kernel = self._step_kernels.get(float(encoding))
            if kernel is not None:
                return kernel
        if self.training or (torch.is_grad_enabled() and
                             (weight.requires_grad or residual.requires_grad)):
            return self.generate_kernel(encoding)
        stamp = (weight._version, residual._version, weight.data_ptr(),
                 residual.data_ptr())
        if stamp != self._cache_stamp:
            self._kernel_cache.clear()
            self._cache_stamp = stamp
        key = float(encoding)
        kernel = self._kernel_cache.get(key)
        if kernel is None:
            with torch.no_grad():
                kernel = self.generate_kernel(key)
            self._kernel_cache[key] = kernel
            while len(self._kernel_cache) > self.cache_size:
                self._kernel_cache.popitem(last=False)
        return kernel

    def clear_kernel_cache(self) -> None:
        self.clear_derived_cache()

    # -------------------------------------------------------------- forward
    def _pad_same(self, x: Tensor) -> Tensor:
        """mmcv's ``Conv2dAdaptivePadding``: pad so that every input pixel is
        covered, ``ceil(size / stride)`` outputs per side."""
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride,
                                 self.dilation):
            out = math.ceil(size / s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        pad_h, pad_w = pads
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2,
                          pad_h // 2, pad_h - pad_h // 2])
        return x

    def forward(self, x: Tensor) -> Tensor:
        state = self.scale_context.require_state(self)
        if self.adaptive_padding:
            x = self._pad_same(x)
        return self._conv_forward(x, self.kernel_for(state.encoding),
                                  self._parameters['bias'])

    def extra_repr(self) -> str:
        extra = ', adaptive_padding=True' if self.adaptive_padding else ''
        return super().extra_repr() + f', meta={self.meta}' + extra
