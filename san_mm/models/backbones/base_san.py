"""What every scale-adaptive backbone shares: training sizes, the active resolution, the policy."""
import contextlib
import re
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils import (DEFAULT_TRAIN_SIZES, MetaConv2d, PrivateBatchNorm2d,
                     ScaleContext, ScaleEncoder, ScalePolicy, ScaleState,
                     check_inference_mode)
from ..utils.plain_init import init_weights_plain_last


def _count(number: int, noun: str) -> str:
    """``'1 size'``, ``'3 sizes'``."""
    return f'{number} {noun}{"" if number == 1 else "s"}'


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
        # Not submodules (see ScaleContext): they hold no tensors, and every
        # forward reads them (the context: every generated conv and private
        # BN shares it).
        self.__dict__['scale_encoder'] = ScaleEncoder(
            train_sizes, **(scale_encoding or {}))
        self.train_sizes = self.scale_encoder.train_sizes
        self.__dict__['scale_policy'] = ScalePolicy(self.scale_encoder,
                                                    inference_mode)
        ScaleContext().hold_in(self)
        self.use_meta_network = bool(use_meta_network)
        self.forced_size: Optional[int] = None
        self._calibrating_size: Optional[int] = None
        # step_kernels' encodings as device tensors, per (encodings, device,
        # dtype): constants of the configuration, never stale
        self._step_scales: Dict[tuple, Tensor] = {}

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
            [k[len(prefix):] for k in state_dict if k.startswith(prefix)],
            whole_model=bool(prefix))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check_checkpoint_compatible(self, keys, whole_model: bool = False
                                    ) -> None:
        """Refuse a checkpoint built for other training sizes, without / with
        the meta network, or a plain (non-SAN) one, before any tensor is
        copied (mmengine loads ``load_from`` and ``init_cfg`` checkpoints
        non-strictly, which would otherwise leave such a model
        half-initialised with a warning).

        Args:
            keys (list[str]): The checkpoint's keys for this backbone, without
                the prefix of the module being loaded.
            whole_model (bool): True when the backbone is loaded as part of a
                classifier (``load_from`` or the model's ``init_cfg``), False
                when it is loaded on its own (the backbone's ``init_cfg``).
                Only changes the advice given.
        """
        name = type(self).__name__
        plain_name = name[len('Meta'):] if name.startswith('Meta') else name
        set_indices = {int(m.group(1)) for k in keys
                       for m in [re.search(r'\.sets\.(\d+)\.', k)] if m}
        has_meta = any(k.endswith('weight_residual') for k in keys)
        has_plain_bn = any(k.endswith('running_mean') and '.sets.' not in k
                           and '.calibrated.' not in k for k in keys)
        if whole_model:
            advice = ("model=dict(init_cfg=dict(type='PretrainedFromPlain', "
                      'checkpoint=...)) instead of load_from / Pretrained (as '
                      'configs/finetune/ does)')
        else:
            advice = ("the backbone's init_cfg=dict(type='PretrainedFromPlain'"
                      ", checkpoint=..., prefix='backbone.') (see "
                      'configs/finetune/)')
        if not set_indices and not has_meta and has_plain_bn:
            raise ValueError(
                f'this looks like a plain mmpretrain {plain_name} checkpoint '
                '(no generated-conv residuals `weight_residual`, one BN per '
                f'layer instead of private `.sets.` BNs), which {name} cannot '
                f'load as it is; start SAN from it with {advice}')
        prefixed = [k for k in keys if k.startswith('backbone.')]
        if prefixed and not whole_model:
            raise ValueError(
                f'the checkpoint is a whole classifier (keys such as '
                f'{prefixed[0]!r}), but it is loaded into the {name} alone: '
                "add prefix='backbone.' to the backbone's init_cfg")
        if set_indices and max(set_indices) + 1 != len(self.train_sizes):
            num_sets = max(set_indices) + 1
            hint = ''
            if num_sets == 1 and not has_meta:
                hint = ('; it is a one-size model without meta network: to '
                        f'start a multi-size SAN from it, use {advice}')
            raise ValueError(
                f'checkpoint has {_count(num_sets, "private BN set")} (one '
                f'per training size), but this {name} has '
                f'{_count(len(self.train_sizes), "training size")}, '
                f'train_sizes={list(self.train_sizes)}: set train_sizes to '
                f'the {_count(num_sets, "size")} the checkpoint was trained '
                f'with (in the same order, largest first){hint}')
        if keys and any(k.endswith('.weight') for k in keys):
            if has_meta != self.use_meta_network:
                if has_meta:
                    what = ('was trained with the meta network (it has '
                            'generated-conv `weight_residual` tensors)')
                    fix = ('set use_meta_network=True (the default) in the '
                           'backbone config')
                else:
                    what = ('was trained without the meta network (private BN '
                            'sets but no generated-conv `weight_residual` '
                            'tensors: the no-meta ablation, configs/'
                            'ablations/*_no_meta.py)')
                    fix = ('set use_meta_network=False in the backbone '
                           'config to load it')
                raise ValueError(
                    f'checkpoint {what}, but this {name} has '
                    f'use_meta_network={self.use_meta_network}: {fix}')

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

    def check_size_fits(self, size: int, name: str = 'input size',
                        fix: str = 'resize the input') -> None:
        """Raise ``ValueError`` naming ``size`` if it is below
        :attr:`min_input_size`; ``fix`` is the next step the message
        suggests (e.g. ``'remove it from test_sizes'``)."""
        if size < self.min_input_size:
            raise ValueError(
                f'{name} {size} is too small for this {type(self).__name__}: '
                f'its total stride is {self.total_stride}, so every size must '
                f'be at least {self.min_input_size} (smaller, and the last '
                'stride-2 layer gets a 1x1 map of padding around one pixel); '
                f'{fix}')

    def _settle_input_sizes(self) -> None:
        """At the end of a subclass's ``__init__``: record
        :attr:`min_input_size` as an instance attribute, which every forward
        reads (a property read under ``torch.compile`` guards the class, and
        takes the backbone out of dynamo's dict-tag fast path), and check the
        training sizes against it."""
        self._min_input_size = self.min_input_size
        for size in self.train_sizes:
            self.check_size_fits(
                size, 'training size',
                f'remove it from train_sizes={list(self.train_sizes)}')

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

    def _san_layers(self, kind: type) -> list:
        """Every private BN or generated conv (``kind``), in ``modules()``
        order.

        A walk over the ``_modules`` dicts that enters neither kind (a
        private BN's K sets and calibrated statistics are most of the
        network's modules) and builds no names: it runs on every forward (the
        calibrated-mode check at unseen sizes, a compiled backbone's kernel
        refresh), and ``modules()`` took 0.3 ms per call on the Fashion-MNIST
        ResNet-18.
        """
        found, seen = [], set()

        def walk(module):
            for child in module._modules.values():
                if child is None or id(child) in seen:
                    continue
                seen.add(id(child))
                if isinstance(child, kind):
                    found.append(child)
                elif child._modules and not isinstance(
                        child, (PrivateBatchNorm2d, MetaConv2d)):
                    walk(child)

        walk(self)
        return found

    def private_bns(self) -> Iterator[PrivateBatchNorm2d]:
        """Every private BN, in ``modules()`` order."""
        return iter(self._san_layers(PrivateBatchNorm2d))

    def meta_convs(self) -> Iterator[MetaConv2d]:
        """Every generated conv, in ``modules()`` order."""
        return iter(self._san_layers(MetaConv2d))

    def compile(self, *args, **kwargs) -> None:
        """``nn.Module.compile`` (this module's call compiled in place; the
        arguments are ``torch.compile``'s), plus an eager step before each
        call. In eval mode without gradients it brings every generated conv's
        kernel cache up to date for the input's size (the checks
        :meth:`MetaConv2d.kernel_for` runs eagerly) and lets the graph read
        those kernels instead of computing ``B + s * A`` on every call.
        Training calls, calls with gradients, and ``torch.compile(model)`` on
        a model around this backbone compute their kernels in the graph.

        The SAN loops' ``compile`` option compiles the backbone this way.
        """
        super().compile(*args, **kwargs)
        compiled = self._compiled_call_impl

        def call_with_fresh_kernels(*inputs, **kw):
            if torch.compiler.is_compiling():  # traced inside a larger graph
                return compiled(*inputs, **kw)
            context = self.scale_context
            context.kernels_cached = self._refresh_kernel_caches(
                inputs[0] if inputs else kw.get('x'))
            try:
                return compiled(*inputs, **kw)
            finally:
                context.kernels_cached = False

        self._compiled_call_impl = call_with_fresh_kernels

    def _refresh_kernel_caches(self, x) -> bool:
        """Eagerly, for a compiled call at ``x``'s size: every generated
        conv's cached kernel, regenerated if its parameters changed. Returns
        whether the compiled graph may read them (eval mode, no gradient can
        flow into a kernel)."""
        if self.training or not isinstance(x, Tensor):
            return False
        convs = [conv for conv in self._san_layers(MetaConv2d)
                 if conv.weight_residual is not None]
        if any(conv.training for conv in convs):
            return False
        if torch.is_grad_enabled() and any(
                conv.weight.requires_grad or conv.weight_residual.requires_grad
                for conv in convs):
            return False
        encoding = self.activate_scale(x).encoding
        with torch.no_grad():
            for conv in convs:
                conv.kernel_for(encoding)
        return True

    @contextlib.contextmanager
    def step_kernels(self, sizes: Sequence[int]):
        """Within the block, every generated conv uses kernels generated for
        all ``sizes`` at once (:meth:`MetaConv2d.set_step_kernels`): one
        training step's forwards at these sizes followed by one joint
        backward. A forward at another size generates its own."""
        encodings = [self.resolve_scale(int(size)).encoding for size in sizes]
        convs = [conv for conv in self.meta_convs()
                 if conv.weight_residual is not None]
        if convs:
            scales = self._scales_tensor(encodings, convs[0].weight_residual)
        for conv in convs:
            conv.set_step_kernels(encodings, scales)
        try:
            yield self
        finally:
            for conv in convs:
                conv.clear_step_kernels()

    def _scales_tensor(self, encodings: Sequence[float], like: Tensor
                       ) -> Tensor:
        """``encodings`` as a tensor on ``like``'s device and dtype, made
        once per (encodings, device, dtype): a tensor made from a list on
        every step would be a synchronising host-to-device copy on CUDA."""
        key = (tuple(encodings), like.device, like.dtype)
        scales = self._step_scales.get(key)
        if scales is None:
            scales = torch.tensor(encodings, dtype=like.dtype,
                                  device=like.device)
            self._step_scales[key] = scales
        return scales

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
        calibrated = ()
        if (self.scale_policy.mode == 'calibrated'  # not the property (above)
                and size not in self.train_sizes):
            # On every forward at an unseen size: one membership test per
            # private BN; the full list only for the policy's warning.
            calibrated = ((size, ) if self.is_calibrated(size) else
                          self.calibrated_sizes)
        return self.scale_policy.resolve(
            size, training=self.training, calibrated_sizes=calibrated)

    def is_calibrated(self, size: int) -> bool:
        """Whether every private BN holds calibrated statistics for
        ``size``."""
        key = str(size)
        found = False
        for module in self.private_bns():
            if key not in module.calibrated._modules:
                return False
            found = True
        return found

    def activate_scale(self, x: Tensor) -> ScaleState:
        """Set the shared scale state for input ``x`` (N, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(
                f'{type(self).__name__} expects an image batch of shape '
                f'(N, C, H, W), got shape {tuple(x.shape)}; add the batch '
                'dimension (x[None]) for a single image')
        input_size = min(x.shape[-2:])
        if input_size < self._min_input_size:
            self.check_size_fits(
                int(input_size), f'input of shape {tuple(x.shape)}: size',
                f'resize the images to at least {self.min_input_size} '
                'pixels')
        size = self.forced_size or input_size
        state = self.resolve_scale(int(size))
        # what nn.Module.__setattr__ does for this value, without its checks
        # (see ScaleContext)
        object.__setattr__(self.scale_context, 'state', state)
        return state

    def leave_scale(self, outputs: tuple) -> tuple:
        """End a forward: set the shared state back to None (eager, after
        copying it to ``scale_context.last_state``, for inspection) and
        return ``outputs``. A compiled call then leaves the context's dict as
        it found it, so dynamo's recursive dict-tag guards can skip the whole
        backbone's guards on the next call; a state left from one call to the
        next would make them evaluate everything, for good. Blocks that
        recompute in backward (``with_cp``) keep their own state
        (:meth:`ScaleContext.checkpoint`)."""
        context = self.scale_context
        if not torch.compiler.is_compiling():
            object.__setattr__(context, 'last_state', context.state)
        object.__setattr__(context, 'state', None)
        return outputs
