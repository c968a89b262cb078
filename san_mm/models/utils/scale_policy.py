"""Scale policy: (test size, inference mode) -> (encoding, which BN statistics).

This is the single place where SAN's inference modes are decided. Layers never branch on modes:
generated convolutions read ``ScaleState.encoding`` and private BNs read ``ScaleState.bn``.

Modes for a resolution ``r`` that is not a training size (at a training size every mode gives
that size's own encoding and BN set, so all modes agree there):

* ``proxy``: encoding and BN of the nearest training size (the reference's default).
* ``ideal``: encoding computed for ``r`` itself, BN of the nearest training size.
* ``calibrated``: encoding for ``r``; BN statistics recomputed for ``r`` from training images
  (post-hoc BN calibration, stored with the model). Sizes without calibrated statistics fall back
  to ``data_free`` with a warning.
* ``data_free``: encoding for ``r``; BN parameters and statistics interpolated between the two
  neighbouring training sizes with ``alpha = (r - S_lo) / (S_hi - S_lo)``. Outside the trained
  range the nearest end is used, with a warning.
"""
import warnings
from dataclasses import dataclass
from typing import Callable, Collection, Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint

from .scale_encoding import ScaleEncoder

INFERENCE_MODES = ('proxy', 'ideal', 'calibrated', 'data_free')


def check_inference_mode(mode: str) -> str:
    """Return ``mode`` if it is a known inference mode, else raise."""
    if mode not in INFERENCE_MODES:
        raise ValueError(
            f'unknown inference mode {mode!r}; expected one of '
            f'{list(INFERENCE_MODES)}: set the backbone\'s inference_mode '
            '(with tools/test.py: --cfg-options inference_mode=calibrated)')
    return mode


@dataclass(frozen=True)
class BNSelection:
    """Which statistics every private BN uses for the active size.

    Attributes:
        kind (str): ``'set'`` (one training size's BN), ``'interpolate'``
            (blend of two training sizes' BNs), ``'calibrated'`` (statistics
            calibrated for ``size``) or ``'calibrating'`` (collecting them).
        index (int): BN set of a training size (``'set'``; for
            ``'interpolate'`` the lower neighbour; for ``'calibrated'`` /
            ``'calibrating'`` the set whose affine parameters are used).
        upper_index (int): upper neighbour (``'interpolate'`` only).
        alpha (float): weight of the upper neighbour (``'interpolate'``).
        size (int): resolution of the calibrated statistics.
    """
    kind: str
    index: int
    upper_index: int = -1
    alpha: float = 1.0
    size: int = -1


@dataclass(frozen=True)
class ScaleState:
    """Everything a SAN layer needs to know about the active resolution."""
    size: int
    encoding: float
    bn: BNSelection

    def describe(self) -> str:
        """One line for logs, e.g. ``encoding 0.6500, BN interpolate(2, 1,
        alpha=0.500)``."""
        bn = self.bn
        if bn.kind == 'interpolate':
            detail = f'{bn.index}, {bn.upper_index}, alpha={bn.alpha:.3f}'
        elif bn.kind in ('calibrated', 'calibrating'):
            detail = f'size {bn.size}, affine of set {bn.index}'
        else:
            detail = f'set {bn.index}'
        return f'encoding {self.encoding:.4f}, BN {bn.kind}({detail})'


class ScaleContext(nn.Module):
    """The active :class:`ScaleState` shared by all SAN layers of one network.

    A backbone owns one context and hands it to every generated conv, private BN and block it
    builds; the backbone sets ``state`` at the start of each forward, the layers read it, and
    the forward ends by setting it back to None (``last_state`` keeps an eager forward's).

    ``kernels_cached`` is True only while a compiled backbone call runs whose eager wrapper
    (:meth:`BaseScaleAdaptiveBackbone.compile`) has just brought every generated conv's kernel
    cache up to date for ``state``: the compiled graph then reads those kernels as inputs
    instead of computing ``B + s * A`` on every call.

    Why an ``nn.Module`` that no module registers (every holder keeps it in its ``__dict__``,
    so it is in no ``state_dict``, ``named_modules`` or ``repr``): under ``torch.compile`` with
    dynamo's recursive dict-tag guards
    (``torch._dynamo.config.use_recursive_dict_tags_for_guards``), a module subtree whose dicts
    are unchanged since the last call is not checked again, but only subtrees made of modules,
    dicts and immutable values qualify. A plain-object context referenced by every layer
    disqualified every layer (MobileNetV2: 182 small subtrees skipped instead of the plain
    model's 13 stage-level ones); as a module it qualifies. With the backbone's other helpers
    (:class:`ScalePolicy`, :class:`~san_mm.models.utils.ScaleEncoder`) held the same way, the
    whole backbone is one subtree skipped (the plain model: each stage).

    The backbone writes ``state`` with ``object.__setattr__``: for a value that is no
    parameter, buffer or module that is what ``nn.Module.__setattr__`` ends in, without its
    look-ups of the module's own dicts (about 0.9 µs per forward on the 2-core CPU, and, traced
    by dynamo, reads of ``__dict__`` that make the context untrusted). Ending every forward
    with ``state`` back at None leaves the context's dict as a compiled call found it, even
    when an eager forward ran before the first one.
    """

    def __init__(self):
        super().__init__()
        self.state: Optional[ScaleState] = None
        # the state of the last eager forward, for inspection (a forward
        # ends with ``state`` back at None: see BaseScaleAdaptiveBackbone.
        # leave_scale)
        self.last_state: Optional[ScaleState] = None
        self.kernels_cached = False

    def hold_in(self, holder: nn.Module) -> None:
        """Make this context ``holder.scale_context`` without registering it
        as a submodule (kept in ``holder.__dict__``; why: above)."""
        holder.__dict__['scale_context'] = self

    def require_state(self, layer) -> ScaleState:
        """The active state, for ``layer`` (the calling module: named only in
        the error). Layers pass themselves rather than their class name, so a
        compiled forward does not read ``type(layer)`` per layer (dynamo
        guards every such read)."""
        if self.state is None:
            raise RuntimeError(
                f'{type(layer).__name__} has no active resolution: call it '
                'through its SAN backbone (which sets the size from the '
                'input) or set `scale_context.state` explicitly')
        return self.state

    def checkpoint(self, layer, function: Callable, *inputs):
        """``torch.utils.checkpoint.checkpoint(function, *inputs)`` (gradient
        checkpointing: activations recomputed in backward) whose
        recomputation runs at the state active now. The backward of a
        multi-size step comes after every size's forward, when the state is
        another size's or None; recomputed at it, a block would use another
        size's kernels and BN set (and wrong gradients).

        Args:
            layer (nn.Module): The calling block (named only in the error
                if no state is active).
            function (Callable): The computation to checkpoint.
            *inputs: Its inputs.
        """
        state = self.require_state(layer)
        if torch.compiler.is_compiling():
            # Traced, the recomputation is part of the backward graph, at the
            # state of this trace; and dynamo breaks the graph at a
            # checkpointed function that writes module state.
            return torch.utils.checkpoint.checkpoint(function, *inputs,
                                                     use_reentrant=False)

        def at_this_state(*args):
            previous = self.state
            object.__setattr__(self, 'state', state)
            try:
                return function(*args)
            finally:
                object.__setattr__(self, 'state', previous)

        return torch.utils.checkpoint.checkpoint(at_this_state, *inputs,
                                                 use_reentrant=False)


class ScalePolicy(nn.Module):
    """Resolves a resolution into a :class:`ScaleState`.

    An ``nn.Module`` with no tensors, kept in its backbone's ``__dict__`` and
    holding its encoder the same way, for the reason given in
    :class:`~san_mm.models.utils.ScaleEncoder`.

    Args:
        encoder (ScaleEncoder): Training sizes and the encoding rule.
        mode (str): Inference mode for sizes that were not trained on, one of
            ``proxy``, ``ideal``, ``calibrated`` and ``data_free``.
    """

    def __init__(self, encoder: ScaleEncoder, mode: str = 'proxy'):
        super().__init__()
        self.__dict__['encoder'] = encoder  # the backbone's, not a submodule
        self.mode = check_inference_mode(mode)
        self._warned = set()

    @property
    def train_sizes(self) -> Sequence[int]:
        return self.encoder.train_sizes

    def resolve(self,
                size: int,
                training: bool = False,
                calibrated_sizes: Collection[int] = ()) -> ScaleState:
        """State for a forward pass at ``size``.

        Args:
            size (int): Input resolution.
            training (bool): Whether the network is in training mode; training
                forwards are only defined at training sizes.
            calibrated_sizes (Collection[int]): Sizes with calibrated BN.

        Returns:
            ScaleState: encoding and BN selection.
        """
        encoder = self.encoder
        if size in encoder.train_sizes:
            index = encoder.index(size)
            return ScaleState(size, encoder.encode(size),
                              BNSelection('set', index))
        if training:
            raise ValueError(
                f'training forward at resolution {size}, but this network has '
                'private BN only for its train_sizes '
                f'{list(encoder.train_sizes)}: resize training images to '
                f'those sizes (ResolutionSample), add {size} to train_sizes, '
                'or call model.eval() to run other sizes')
        nearest = encoder.nearest(size)
        nearest_bn = BNSelection('set', encoder.index(nearest))
        if self.mode == 'proxy':
            return ScaleState(size, encoder.encode(nearest), nearest_bn)
        encoding = encoder.encode(size)
        if self.mode == 'ideal':
            return ScaleState(size, encoding, nearest_bn)
        if self.mode == 'calibrated':
            if size in calibrated_sizes:
                return ScaleState(
                    size, encoding,
                    BNSelection('calibrated', encoder.index(nearest),
                                size=size))
            self._warn_once(
                ('uncalibrated', size),
                f'no calibrated BN statistics for resolution {size} '
                f'(calibrated: {sorted(calibrated_sizes)}); using data-free '
                'BN interpolation instead. Calibrate it once with `python '
                f'tools/calibrate_bn.py CONFIG CKPT --sizes {size} --out '
                'CKPT_CAL`, or keep PerSizeBNHook in custom_hooks')
        return ScaleState(size, encoding, self._interpolated_bn(size))

    def calibration_state(self, size: int) -> ScaleState:
        """State used while collecting calibrated BN statistics for ``size``."""
        nearest = self.encoder.nearest(size)
        return ScaleState(
            size, self.encoder.encode(size),
            BNSelection('calibrating', self.encoder.index(nearest), size=size))

    def _interpolated_bn(self, size: int) -> BNSelection:
        encoder = self.encoder
        if not encoder.in_range(size):
            self._warn_once(
                ('out_of_range', size),
                f'resolution {size} is outside the trained range '
                f'{min(encoder.train_sizes)}..{max(encoder.train_sizes)}; '
                'data-free BN uses the nearest end (inference_mode='
                "'calibrated' with tools/calibrate_bn.py fits BN to it)")
        lower, upper, alpha = encoder.neighbours(size)
        return BNSelection('interpolate', encoder.index(lower),
                           upper_index=encoder.index(upper), alpha=alpha)

    def _warn_once(self, key, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)
