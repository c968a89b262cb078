"""How a CNN becomes scale-adaptive: the one home of the conversion.

``ScaleAdaptive(backbone=dict(type='RegNet', ...), train_sizes=[...])`` builds the plain backbone
through mmpretrain's registry and converts it in place: the convolutions a rule chooses become
generated convolutions W(s) = B + s * A (:class:`MetaConv2d`), every BatchNorm becomes a private BN
with one set per training size (:class:`PrivateBatchNorm2d`), and all of them share one
:class:`ScaleContext`. The object stays the plain backbone — its class becomes a subclass of both
:class:`BaseScaleAdaptiveBackbone` and the plain class — so module names (and with them checkpoint
keys), ``train()`` (frozen stages, ``norm_eval``), ``init_weights`` and the forward are the plain
backbone's own; SAN adds reading the size from the input and the per-size state around it.
"""
import contextlib
import copy
import math
import re
from typing import Iterator, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from mmpretrain.registry import MODELS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils import (DEFAULT_TRAIN_SIZES, MetaConv2d, PrivateBatchNorm2d,
                     ScaleContext, ScaleEncoder, ScalePolicy, ScaleState,
                     check_inference_mode, validate_sizes)
from ..utils.meta_conv import check_meta_init
from ..utils.plain_init import init_weights_plain_last

#: Which convolutions are generated, besides a regular expression on their names.
GENERATED_CONVS = ('all', 'all_but_stem')


def _count(number: int, noun: str) -> str:
    """``'1 size'``, ``'3 sizes'``."""
    return f'{number} {noun}{"" if number == 1 else "s"}'


class BaseScaleAdaptiveBackbone(nn.Module):
    """What every scale-adaptive backbone adds to its plain backbone.

    Mixed in before the plain backbone's class by :func:`ScaleAdaptive`: each forward reads the
    active size from its input (the shorter side, so a plain forward at a training size uses
    that size's kernels and BN), resolves it with the inference mode into a
    :class:`ScaleState` (:class:`ScalePolicy`), makes it the shared context's state for the
    plain forward and then puts back the state it found.

    Attributes:
        train_sizes (tuple[int]): Training resolutions, largest first (BN set ``i`` is the
            ``i``-th largest).
        inference_mode (str): How sizes that were not trained on are run: ``proxy``,
            ``ideal``, ``calibrated`` or ``data_free``
            (:mod:`san_mm.models.utils.scale_policy`).
        min_input_size (int): The smallest side the network accepts, ``total_stride // 2 + 1``.
        plain_cfg (dict | None): Config of the plain backbone (what export builds).
    """

    # ----------------------------------------------------------------- set-up
    def _setup_scale_adaptive(self, train_sizes, generated_convs, scale_encoding,
                              inference_mode, use_meta_network, meta_init,
                              plain_cfg):
        self.scale_encoder = ScaleEncoder(train_sizes, **(scale_encoding or {}))
        self.train_sizes = self.scale_encoder.train_sizes
        self.scale_policy = ScalePolicy(self.scale_encoder)
        self.scale_context = ScaleContext()
        self.inference_mode = inference_mode
        self.use_meta_network = bool(use_meta_network)
        self.meta_init = check_meta_init(meta_init)
        self.generated_convs = generated_convs
        self.plain_cfg = copy.deepcopy(plain_cfg)
        self.forced_size: Optional[int] = None
        self._calibrating_size: Optional[int] = None
        self._step_scales = {}
        self._convert(generated_convs)
        self.private_bn_layers = tuple(
            m for m in self.modules() if isinstance(m, PrivateBatchNorm2d))
        self.meta_conv_layers = tuple(
            m for m in self.modules() if isinstance(m, MetaConv2d))
        self.with_checkpointing = any(
            getattr(m, 'with_cp', False) for m in self.modules())
        self._check_train_sizes()

    def _convert(self, rule) -> None:
        convs = [(name, m) for name, m in self.named_modules()
                 if isinstance(m, nn.Conv2d)]
        name = type(self).__name__
        if not convs:
            raise ValueError(f'{name} has no Conv2d layers: SAN generates '
                             'convolution kernels; wrap a CNN backbone')
        chosen = _choose_convs(convs, rule, name)
        if not any(isinstance(m, _BatchNorm) for m in self.modules()):
            raise ValueError(_no_batch_norm_message(self, name))
        size_count = len(self.train_sizes)
        replaced = {}
        for parent in list(self.modules()):
            for child_name, child in list(parent._modules.items()):
                if child is None:
                    continue
                new = replaced.get(id(child))
                if new is None:
                    if isinstance(child, _BatchNorm):
                        new = PrivateBatchNorm2d.from_bn(child, size_count,
                                                         self.scale_context)
                    elif id(child) in chosen:
                        new = MetaConv2d.from_conv(
                            child, self.scale_context, self.use_meta_network,
                            self.meta_init,
                            isinstance(child, Conv2dAdaptivePadding))
                    else:
                        continue
                    replaced[id(child)] = new
                setattr(parent, child_name, new)

    def _check_train_sizes(self) -> None:
        """Every training size must run through the network: a shape-only
        forward (:meth:`_probe`) at a power-of-two size gives the total
        stride, then each size that is not a multiple of it is tried."""
        first_conv = next(m for m in self.modules()
                          if isinstance(m, nn.Conv2d))
        self.in_channels_ = first_conv.in_channels
        self._fitting_sizes = set()
        self.total_stride, self.min_input_size = 1, 1  # until measured
        probe = 2 ** math.ceil(math.log2(max(self.train_sizes)))
        outputs = self._probe(probe, 'training size')
        smallest = min(min(out.shape[-2:]) for out in _tensors(outputs))
        self.total_stride = max(1, round(probe / smallest))
        self.min_input_size = self.total_stride // 2 + 1
        for size in self.train_sizes:
            self.check_size_fits(
                size, 'training size',
                f'remove it from train_sizes={list(self.train_sizes)}')

    def _probe(self, size: int, name: str, fix: str = 'choose another size'):
        """A forward of one image at ``size`` on the meta device (shapes
        only, no arithmetic: ``torch.func.functional_call`` with every
        parameter and buffer on ``meta``), in eval mode and proxy mode."""
        was_training = self.training
        tensors = {key: tensor.to('meta') for key, tensor in
                   list(self.named_parameters()) + list(self.named_buffers())}
        x = torch.zeros(1, self.in_channels_, size, size, device='meta')
        self.train(False)
        try:
            with torch.no_grad(), self.at_size(size, 'proxy'):
                return torch.func.functional_call(self, tensors, (x, ))
        except RuntimeError as error:
            raise ValueError(
                f'{name} {size} does not run through this '
                f'{type(self).__name__}: {error}; {fix}') from error
        finally:
            self.train(was_training)  # also drops what the probe cached

    # ------------------------------------------------------ input sizes
    def check_size_fits(self, size: int, name: str = 'input size',
                        fix: str = 'resize the input') -> None:
        """Raise ``ValueError`` naming ``size`` if the network cannot run it
        meaningfully: below :attr:`min_input_size` (the last stride-2 layer
        would see a 1x1 map of padding around one pixel), or if its layers
        cannot (e.g. HRNet's branches must halve evenly); ``fix`` is the next
        step the message suggests."""
        if size < self.min_input_size:
            raise ValueError(
                f'{name} {size} is too small for this {type(self).__name__}: '
                f'its total stride is {self.total_stride}, so every size must '
                f'be at least {self.min_input_size} (smaller, and the last '
                'stride-2 layer gets a 1x1 map of padding around one pixel); '
                f'{fix}')
        # A multiple of the total stride halves evenly through every layer;
        # other sizes are tried (e.g. HRNet's branches must agree).
        if size % self.total_stride and size not in self._fitting_sizes:
            self._probe(size, name, fix)
            self._fitting_sizes.add(size)

    def train(self, mode: bool = True):
        super().train(mode)  # the plain backbone's (frozen stages, norm_eval)
        return self  # which some (mmpretrain's ResNet) do not return

    # ----------------------------------------------------------- weights
    def init_weights(self):
        """The plain backbone's own initialisation (its ``init_cfg`` and
        ``init_weights``, every private BN seen as one BN, then copied to
        every set), then A (and B, for the reference's inits) as
        ``meta_init`` says; a ``PretrainedFromPlain`` init last."""

        def plain_init():
            with self._plain_view():
                super(BaseScaleAdaptiveBackbone, self).init_weights()
            for conv in self.meta_conv_layers:
                conv.init_meta()

        init_weights_plain_last(self, plain_init)

    @contextlib.contextmanager
    def _plain_view(self):
        """Inside the block every private BN is replaced by its first set, so
        code written for the plain backbone (e.g. ``zero_init_residual``,
        mmcv's ``ConvModule.init_weights``) sees ordinary BN layers; on exit
        the sets are put back, each a copy of the first."""
        places = [(parent, name, child) for parent in self.modules()
                  for name, child in parent._modules.items()
                  if isinstance(child, PrivateBatchNorm2d)]
        for parent, name, child in places:
            parent._modules[name] = child.sets[0]
        try:
            yield
        finally:
            for parent, name, child in places:
                parent._modules[name] = child
                first = child.sets[0].state_dict()
                for bn in child.sets[1:]:
                    bn.load_state_dict(first)

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
        plain_name = type(self).__mro__[2].__name__
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

    # ---------------------------------------------------- active resolution
    @property
    def inference_mode(self) -> str:
        return self._inference_mode

    @inference_mode.setter
    def inference_mode(self, mode: str) -> None:
        self._inference_mode = check_inference_mode(mode)

    def private_bns(self) -> Iterator[PrivateBatchNorm2d]:
        """Every private BN, in ``modules()`` order."""
        return iter(self.private_bn_layers)

    def meta_convs(self) -> Iterator[MetaConv2d]:
        """Every generated conv, in ``modules()`` order."""
        return iter(self.meta_conv_layers)

    @property
    def calibrated_sizes(self) -> List[int]:
        """Sizes for which every private BN holds calibrated statistics."""
        sizes = None
        for module in self.private_bn_layers:
            own = set(module.calibrated.keys())
            sizes = own if sizes is None else sizes & own
        return sorted(int(size) for size in sizes or ())

    def resolve_scale(self, size: int) -> ScaleState:
        """The :class:`ScaleState` a forward at ``size`` uses now."""
        if size == self._calibrating_size:
            return self.scale_policy.calibration_state(size)
        mode = self._inference_mode
        calibrated = ()
        if mode == 'calibrated' and size not in self.train_sizes:
            calibrated = self.calibrated_sizes
        return self.scale_policy.resolve(size, mode, self.training,
                                         calibrated)

    @contextlib.contextmanager
    def at_size(self, size: int, mode: Optional[str] = None):
        """Inside the block, every forward runs as if its input were ``size``
        pixels (e.g. a non-square input), in inference mode ``mode`` (None:
        the backbone's ``inference_mode``), and between forwards that size's
        state stays active (a backward that recomputes activations, such as
        gradient checkpointing, sees it). Every tool that runs the network
        at a size or mode goes through this."""
        validate_sizes([size], 'size')
        if mode is not None:
            check_inference_mode(mode)
        context = self.scale_context
        saved = (self.forced_size, self._inference_mode, context.state)
        self.forced_size = int(size)
        if mode is not None:
            self._inference_mode = mode
        try:
            context.state = self.resolve_scale(int(size))
            yield self
        finally:
            self.forced_size, self._inference_mode, context.state = saved

    def force_size(self, size: int):
        """``at_size(size)`` (kept for earlier code)."""
        return self.at_size(size)

    @contextlib.contextmanager
    def calibrating(self, size: int):
        """Inside the block, forwards at ``size`` normalise with batch
        statistics and accumulate them as calibrated BN statistics for
        ``size`` (post-hoc BN calibration; see :class:`PrivateBatchNorm2d`)."""
        validate_sizes([size], 'size')
        for module in self.private_bn_layers:
            module.reset_calibration(size)
        previous, self._calibrating_size = self._calibrating_size, int(size)
        try:
            with self.at_size(size):
                yield self
        finally:
            self._calibrating_size = previous

    def remove_calibration(self, sizes: Optional[Sequence[int]] = None) -> None:
        """Drop the calibrated BN statistics of ``sizes`` (None: all)."""
        for module in self.private_bn_layers:
            for size in (module.calibrated_sizes if sizes is None else sizes):
                module.remove_calibration(size)

    @contextlib.contextmanager
    def step_kernels(self, sizes: Sequence[int]):
        """Within the block, every generated conv uses kernels generated for
        all ``sizes`` at once (:meth:`MetaConv2d.set_step_kernels`): one
        training step's forwards at these sizes followed by one joint
        backward."""
        encodings = [self.resolve_scale(int(size)).encoding for size in sizes]
        convs = [conv for conv in self.meta_conv_layers
                 if conv.weight_residual is not None]
        if convs:
            like = convs[0].weight_residual
            key = (tuple(encodings), like.device, like.dtype)
            if key not in self._step_scales:  # a device tensor made once
                self._step_scales[key] = torch.tensor(
                    encodings, dtype=like.dtype, device=like.device)
        for conv in convs:
            conv.set_step_kernels(encodings, self._step_scales[key])
        try:
            yield self
        finally:
            for conv in convs:
                conv.clear_step_kernels()

    def input_scale(self, x: Tensor) -> ScaleState:
        """The state of a forward at input ``x`` (N, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(
                f'{type(self).__name__} expects an image batch of shape '
                f'(N, C, H, W), got shape {tuple(x.shape)}; add the batch '
                'dimension (x[None]) for a single image')
        size = self.forced_size or int(min(x.shape[-2:]))
        if size < self.min_input_size:
            self.check_size_fits(
                size, f'input of shape {tuple(x.shape)}: size',
                f'resize the images to at least {self.min_input_size} '
                'pixels')
        return self.resolve_scale(size)

    def forward(self, x):
        context = self.scale_context
        previous = context.state
        context.state = self.input_scale(x)
        try:
            return super().forward(x)
        finally:
            context.state = previous


def _tensors(outputs) -> List[Tensor]:
    """The 4-D tensors among a backbone's outputs (nested tuples / lists)."""
    if isinstance(outputs, Tensor):
        return [outputs] if outputs.dim() == 4 else []
    found = []
    for out in outputs:
        found += _tensors(out)
    return found


def _no_batch_norm_message(net: nn.Module, name: str) -> str:
    """Why ``net`` (which has no BatchNorm) cannot be made scale-adaptive,
    and what to build instead: the reason that applies to it."""
    nothing = (f'{name} has no BatchNorm layers, so there is nothing for SAN '
               'to keep private per size')
    if any(getattr(m, 'deploy', False) is True for m in net.modules()):
        return (f'{nothing}: it was built with deploy=True, which has folded '
                'its BN into the convolutions; build it with deploy=False '
                '(its training form, with BN), and re-parameterise the plain '
                'model that tools/export.py writes at one size')
    norms = sorted({type(m).__name__ for m in net.modules()
                    if isinstance(m, (nn.LayerNorm, nn.GroupNorm))})
    if norms:
        return (f'{nothing}: it normalises with {", ".join(norms)}, which '
                'normalise each image by its own statistics and keep no '
                'running statistics, so no statistics differ between '
                'training and test sizes for private BN to separate; use a '
                'BatchNorm CNN of a similar design (e.g. RegNet or ResNeXt '
                'in place of ConvNeXt)')
    return (f'{nothing}: SAN keeps one BatchNorm per training size; use a '
            'CNN with BatchNorm (norm_cfg=dict(type=\'BN\') where the '
            'backbone takes one)')


def _choose_convs(convs, rule, name) -> set:
    """The ids of the convolutions ``rule`` generates."""
    if rule == 'all':
        chosen = convs
    elif rule == 'all_but_stem':  # the first conv, the one that sees the image
        chosen = convs[1:]
    elif isinstance(rule, str):
        try:
            pattern = re.compile(rule)
        except re.error as error:
            raise ValueError(f'generated_convs={rule!r} is not a regular '
                             f'expression ({error})') from None
        chosen = [(n, m) for n, m in convs if pattern.search(n)]
        if not chosen:
            raise ValueError(
                f'generated_convs={rule!r} matches none of the convolutions '
                f'of {name}: {[n for n, _ in convs][:8]}...; give '
                f"{list(GENERATED_CONVS)} or a pattern of their names")
    else:
        raise TypeError(
            f'generated_convs must be one of {list(GENERATED_CONVS)} or a '
            f'regular expression on conv names, got {rule!r}')
    for conv_name, conv in chosen:
        if isinstance(conv, MetaConv2d):
            raise ValueError(f'{name} is scale-adaptive already')
        if not (type(conv).forward in (nn.Conv2d.forward, MMCVConv2d.forward)
                or isinstance(conv, Conv2dAdaptivePadding)):
            raise TypeError(
                f'{conv_name} is a {type(conv).__name__} with a forward of its '
                'own, which a generated convolution cannot reproduce; build '
                'the backbone with plain convolutions (conv_cfg=None), or '
                'leave it shared with a generated_convs pattern that skips it')
    return {id(conv) for _, conv in chosen}


_CLASSES = {}


def scale_adaptive_class(plain_cls: type) -> type:
    """``ScaleAdaptive<Plain>``: :class:`BaseScaleAdaptiveBackbone` mixed into
    ``plain_cls`` (made once per class; found by name in this module, so
    pickling works for registered backbones)."""
    cls = _CLASSES.get(plain_cls)
    if cls is None:
        name = f'ScaleAdaptive{plain_cls.__name__}'
        cls = type(name, (BaseScaleAdaptiveBackbone, plain_cls),
                   dict(__module__=__name__, __qualname__=name,
                        __doc__=f'{plain_cls.__name__} made scale-adaptive '
                        'by san_mm.models.backbones.ScaleAdaptive.'))
        _CLASSES[plain_cls] = cls
        globals().setdefault(name, cls)
    return cls


def __getattr__(name: str):
    """``ScaleAdaptive<Plain>`` classes on demand (for unpickling)."""
    if name.startswith('ScaleAdaptive') and len(name) > len('ScaleAdaptive'):
        plain_cls = MODELS.get(name[len('ScaleAdaptive'):])
        if plain_cls is not None:
            return scale_adaptive_class(plain_cls)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


@MODELS.register_module()
def ScaleAdaptive(backbone: Union[dict, nn.Module],
                  train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
                  generated_convs: str = 'all_but_stem',
                  scale_encoding: Optional[dict] = None,
                  inference_mode: str = 'proxy',
                  use_meta_network: bool = True,
                  meta_init: str = 'plain',
                  init_cfg=None) -> BaseScaleAdaptiveBackbone:
    """Any mmpretrain CNN backbone, scale-adaptive (SAN, ECCV 2020).

    Args:
        backbone (dict | nn.Module): The plain backbone's config (built with
            mmpretrain's registry) or the backbone itself (converted in place;
            export then needs a config).
        train_sizes (Sequence[int]): Training resolutions; any order, kept
            largest first. Defaults to 224/192/160/128/96.
        generated_convs (str): Which convolutions are generated: ``'all'``,
            ``'all_but_stem'`` (all but the first, which reads the image:
            shared, as the reference's ResNet) or a regular expression that
            their names must match (``re.search``). The others stay shared.
            Defaults to ``'all_but_stem'``.
        scale_encoding (dict, optional): :class:`ScaleEncoder` arguments
            (``max_encoding``, ``reference_size``). Defaults to the official
            ``0.7 * r / max(train_sizes)``.
        inference_mode (str): Mode for sizes that were not trained on:
            ``proxy``, ``ideal``, ``calibrated`` or ``data_free``.
        use_meta_network (bool): If False, every generated conv keeps one
            shared kernel (private BN only: the RS-Net-style ablation).
        meta_init (str): How A and B start, see :data:`META_INITS`; the
            default ``'plain'`` is the plain backbone's own initialisation
            with A = 0.
        init_cfg (dict | list[dict], optional): e.g. ``dict(type=
            'PretrainedFromPlain', checkpoint=..., prefix='backbone.')`` to
            start from a plain checkpoint (run after the plain backbone's own
            initialisation), or ``dict(type='Pretrained', ...)`` for a SAN
            checkpoint (instead of it).

    Returns:
        BaseScaleAdaptiveBackbone: the plain backbone, converted; its class
        is ``ScaleAdaptive<Plain>``, a subclass of the plain class.

    Example:
        >>> import torch
        >>> from san_mm.models import ScaleAdaptive
        >>> net = ScaleAdaptive(dict(type='RegNet', arch=dict(
        ...     w0=8, wa=8, wm=1.5, group_w=8, depth=5, bot_mul=1.0),
        ...     stem_channels=8), train_sizes=[64, 48, 32]).eval()
        >>> [tuple(net(torch.rand(1, 3, r, r))[-1].shape) for r in (64, 40)]
        [(1, 40, 2, 2), (1, 40, 2, 2)]
    """
    if isinstance(backbone, dict):
        plain_cfg = copy.deepcopy(dict(backbone))
        plain = MODELS.build(backbone)
    elif isinstance(backbone, nn.Module):
        plain_cfg, plain = None, backbone
    else:
        raise TypeError('ScaleAdaptive: backbone must be a backbone config '
                        "(e.g. dict(type='RegNet', arch='regnetx_400mf')) or "
                        f'an nn.Module, got {type(backbone).__name__}')
    if isinstance(plain, BaseScaleAdaptiveBackbone):
        raise ValueError(f'{type(plain).__name__} is scale-adaptive already')
    plain.__class__ = scale_adaptive_class(type(plain))
    plain._setup_scale_adaptive(train_sizes, generated_convs, scale_encoding,
                                inference_mode, use_meta_network, meta_init,
                                plain_cfg)
    if init_cfg is not None:
        inits = init_cfg if isinstance(init_cfg, list) else [init_cfg]
        from_plain = all(isinstance(c, dict) and c.get('type') ==
                         'PretrainedFromPlain' for c in inits)
        own = plain.init_cfg if from_plain else None
        own = own if isinstance(own, list) else [own] if own else []
        plain.init_cfg = own + inits
    return plain
