"""Generated convolution: the kernel is produced from the scale encoding, W(s) = B + s * A.

In the reference implementation each generated conv owns a meta network ``Linear(1, numel(W))``
whose weight is the flattened residual A and whose bias is the flattened base B. Storing A and B
directly in kernel shape is the same function and the same parameters (2x the kernel), without
reshapes on the hot path; ``weight`` holds B so that the module's state dict is a superset of a
plain ``nn.Conv2d``'s (conversion to and from plain models is a rename at most).
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .derived_cache import DerivedTensorCacheMixin
from .scale_policy import ScaleContext

#: Initialisations of the reference implementation.
#: ``resnet``: PyTorch's default ``Linear(1, N)`` init, i.e. A and B ~ U(-1, 1) (fan_in = 1).
#: ``mobilenet_v2``: every Linear ~ N(0, 0.01) with zero bias, i.e. A ~ N(0, 0.01), B = 0.
#: ``kaiming``: B ~ Kaiming normal (fan_out), A = 0: starts as a plain, scale-independent conv.
META_INITS = ('resnet', 'mobilenet_v2', 'kaiming')


class MetaConv2d(DerivedTensorCacheMixin, nn.Conv2d):
    """A convolution whose kernel is generated from the active scale encoding.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple): Kernel size.
        scale_context (ScaleContext): Shared holder of the active resolution
            (set by the owning backbone before each forward).
        stride, padding, dilation, groups: As in :class:`torch.nn.Conv2d`.
        meta (bool): If False the kernel is shared across sizes (no residual
            A): the "no meta network" ablation. Defaults to True.
        meta_init (str): One of :data:`META_INITS`. Defaults to ``'resnet'``.
        cache_size (int): How many eval-mode kernels to keep (one per
            encoding). Defaults to 32.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H', W')`
        - ``weight`` (B) and ``weight_residual`` (A):
          :math:`(C_{out}, C_{in} / groups, k_h, k_w)`

    Example:
        >>> from san_mm.models.utils import ScaleContext, MetaConv2d
        >>> ctx = ScaleContext()
        >>> conv = MetaConv2d(8, 16, 3, ctx, padding=1)
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
                 meta: bool = True,
                 meta_init: str = 'resnet',
                 cache_size: int = 32):
        if meta_init not in META_INITS:
            raise ValueError(
                f'unknown meta_init {meta_init!r}; expected one of '
                f"{list(META_INITS)}: set the backbone's meta_init ('resnet' "
                "for MetaResNet, 'mobilenet_v2' for MetaMobileNetV2)")
        if not isinstance(scale_context, ScaleContext):
            raise TypeError('scale_context must be a ScaleContext, got '
                            f'{type(scale_context).__name__}')
        self.meta = bool(meta)
        self.meta_init = meta_init
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, dilation=dilation, groups=groups,
                         bias=False)
        scale_context.hold_in(self)  # shared by every layer of the network
        if self.meta:
            self.weight_residual = nn.Parameter(torch.empty_like(self.weight))
        else:
            self.register_parameter('weight_residual', None)
        self.cache_size = cache_size
        self._kernel_cache: 'OrderedDict[float, Tensor]' = OrderedDict()
        self._cache_stamp = None  # the parameters' versions and pointers
        # One training step's kernels, every size's from one batched op
        # (``step_kernels``); None outside such a step.
        self._step_kernels: 'Optional[Dict[float, Tensor]]' = None
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        # nn.Conv2d.__init__ calls this before the residual exists; the
        # complete initialisation runs at the end of our __init__.
        if 'weight_residual' not in self._parameters:
            return None
        residual = self.weight_residual
        if self.meta_init == 'resnet':
            # PyTorch's Linear(1, N) default: U(-1/sqrt(fan_in), ...) with fan_in = 1
            nn.init.uniform_(self.weight, -1.0, 1.0)
            if residual is not None:
                nn.init.uniform_(residual, -1.0, 1.0)
        elif self.meta_init == 'mobilenet_v2':
            nn.init.zeros_(self.weight)
            if residual is not None:
                nn.init.normal_(residual, 0.0, 0.01)
            else:  # shared conv: nothing to generate from, keep the N(0, .01)
                nn.init.normal_(self.weight, 0.0, 0.01)
        else:  # kaiming
            nn.init.kaiming_normal_(self.weight, mode='fan_out',
                                    nonlinearity='relu')
            if residual is not None:
                nn.init.zeros_(residual)
        self.clear_kernel_cache()

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
            # Each kernel channels-last like the weights (as B + s * A is),
            # so a channels-last network's convs get the layout they run
            # in: generate in (O, kh, kw, I) order, then view back.
            made = torch.addcmul(weight.permute(0, 2, 3, 1).unsqueeze(0),
                                 scales,
                                 residual.permute(0, 2, 3, 1).unsqueeze(0))
            return made.permute(0, 1, 4, 2, 3)
        return torch.addcmul(base, scales, residual.unsqueeze(0))

    def set_step_kernels(self, encodings: Sequence[float],
                         scales: Optional[Tensor] = None) -> None:
        """Generate the kernels of every encoding of one training step in
        one batched op, for the forwards that follow (one per encoding) to
        use; :meth:`clear_step_kernels` ends the step.

        With one joint backward this is the same function as generating at
        each forward, with fewer operations to launch: forward, one
        ``addcmul`` per layer instead of one ``add`` per size; backward, one
        reduction each for A and B instead of a product per size and an
        accumulation of each size's gradient into A and B. The per-size
        backward (``update_per_size``) must not use it: each of its
        backwards would run the shared batched op again.

        Args:
            encodings (Sequence[float]): One encoding per size of the step.
            scales (Tensor, optional): The same encodings as a tensor on the
                kernel's device and dtype. Pass it on CUDA: made from a list,
                the tensor is a host-to-device copy, which synchronises.
        """
        if self.weight_residual is None:  # shared kernel: nothing to make
            return
        encodings = [float(e) for e in encodings]
        kernels = self.generate_kernels(encodings if scales is None else scales)
        self._step_kernels = dict(zip(encodings, kernels.unbind(0)))

    def clear_step_kernels(self) -> None:
        self._step_kernels = None

    def kernel_for(self, encoding: float) -> Tensor:
        """The kernel for ``encoding``, cached in eval mode; within a
        training step whose kernels were batched (:meth:`set_step_kernels`),
        that step's kernel.

        The cache is used only when no gradient can flow into the kernel
        (eval mode and grad disabled, or frozen parameters); it is dropped
        whenever the parameters may have changed: in-place updates (optimiser
        steps, ``load_state_dict``) bump their version counters, ``.to()`` /
        ``.cuda()`` / ``.half()`` go through ``_apply``, and ``train()``
        switches clear it.

        Under ``torch.compile`` the kernel is ``B + s * A`` computed in the
        graph: the cache's validity checks (version counters, data pointers)
        would break the graph, and a graph that computes its kernels can
        never be stale. The one exception is a backbone compiled with its
        own :meth:`BaseScaleAdaptiveBackbone.compile`: its eager wrapper
        runs this method for every conv before each eval call without
        gradients (so the checks run, eagerly) and sets
        ``scale_context.kernels_cached``; the graph then reads the cached
        kernels as inputs (dynamo guards their shape, not their identity or
        version: refilled caches recompile nothing). Unfrozen, batch 1, on
        CPU: ResNet-18's compiled backbone at 96 px went from 1.16x to 1.05x
        the plain one's time.
        """
        compiling = torch.compiler.is_compiling()
        # A training step's batched kernels (eager only: a compiled graph
        # makes its own, and must not guard on this attribute).
        if not compiling and self._step_kernels is not None:
            kernel = self._step_kernels.get(float(encoding))
            if kernel is not None:
                return kernel
        # Parameters straight from `_parameters`: each `self.weight` goes
        # through Module.__getattr__, the largest part of what this check
        # costs per layer at batch 1.
        params = self._parameters
        weight, residual = params['weight'], params['weight_residual']
        if compiling and self.scale_context.kernels_cached and \
                residual is not None:
            return self._kernel_cache[float(encoding)]
        if self.training or residual is None or compiling:
            return self.generate_kernel(encoding)
        if torch.is_grad_enabled() and (weight.requires_grad
                                        or residual.requires_grad):
            return self.generate_kernel(encoding)
        # Only the cheap checks run on every cached forward: in-place updates
        # (optimiser steps, load_state_dict) bump _version, `.data =` swaps
        # the storage; device and dtype changes go through _apply, which
        # clears the cache.
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
        # train(), .to(), load_state_dict and pickling clear it too
        # (DerivedTensorCacheMixin).
        self.clear_derived_cache()

    # -------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        state = self.scale_context.require_state(self)
        return self._conv_forward(x, self.kernel_for(state.encoding), None)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', meta={self.meta}'
