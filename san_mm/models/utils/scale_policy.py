"""Scale policy: (size, inference mode) -> (encoding, which BN statistics).

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
from typing import Collection, Optional

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


class ScaleContext:
    """The active :class:`ScaleState`, shared by every SAN layer of one network.

    A scale-adaptive backbone owns one context and hands it to every generated conv and private
    BN; each forward sets ``state`` from its input's size and puts back the one it found (None
    outside a forward, or the state of an enclosing ``backbone.at_size(...)`` block).
    """

    def __init__(self):
        self.state: Optional[ScaleState] = None

    def require_state(self, layer) -> ScaleState:
        """The active state, for ``layer`` (the calling module, named only in
        the error)."""
        if self.state is None:
            raise RuntimeError(
                f'{type(layer).__name__} has no active resolution: call it '
                'through its scale-adaptive backbone (which sets the size from '
                'the input), or inside `with backbone.at_size(size):` (a '
                'backward that recomputes activations, e.g. with_cp, runs '
                'after the forward: see SANClassifier(backward_per_size=True))')
        return self.state


class ScalePolicy:
    """Resolves a resolution and an inference mode into a :class:`ScaleState`.

    Args:
        encoder (ScaleEncoder): Training sizes and the encoding rule.
    """

    def __init__(self, encoder: ScaleEncoder):
        self.encoder = encoder
        self._warned = set()

    def resolve(self,
                size: int,
                mode: str = 'proxy',
                training: bool = False,
                calibrated_sizes: Collection[int] = ()) -> ScaleState:
        """State for a forward pass at ``size``.

        Args:
            size (int): Input resolution.
            mode (str): Inference mode for a size that is not a training size.
            training (bool): Whether the network is in training mode; training
                forwards are only defined at training sizes.
            calibrated_sizes (Collection[int]): Sizes with calibrated BN.

        Returns:
            ScaleState: encoding and BN selection.
        """
        encoder = self.encoder
        if size in encoder.train_sizes:
            return ScaleState(size, encoder.encode(size),
                              BNSelection('set', encoder.index(size)))
        if training:
            raise ValueError(
                f'training forward at resolution {size}, but this network has '
                'private BN only for its train_sizes '
                f'{list(encoder.train_sizes)}: resize training images to '
                f'those sizes (ResolutionSample), add {size} to train_sizes, '
                'or call model.eval() to run other sizes')
        nearest = encoder.nearest(size)
        nearest_bn = BNSelection('set', encoder.index(nearest))
        if mode == 'proxy':
            return ScaleState(size, encoder.encode(nearest), nearest_bn)
        encoding = encoder.encode(size)
        if mode == 'ideal':
            return ScaleState(size, encoding, nearest_bn)
        if mode == 'calibrated':
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
