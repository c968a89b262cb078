"""Scale encoding: input resolution -> the scalar that conditions every generated kernel.

The reference implementation hard-codes the encodings by list position (branch ``i`` uses
``0.7 - 0.1 * i``). For its default sizes 224/192/160/128/96 that is exactly ``0.7 * r / 224``, so
this module uses the general linear rule ``s(r) = max_encoding * r / reference_size`` (the
reference size defaults to the largest training size), which reproduces the official encodings
and extends to any number of training sizes and to unseen test sizes (ideal inference).
"""
import numbers
from typing import Iterable, Optional, Sequence, Tuple

DEFAULT_TRAIN_SIZES = (224, 192, 160, 128, 96)


def validate_sizes(sizes, name: str = 'train_sizes') -> Tuple[int, ...]:
    """Check a list of resolutions and return it sorted largest first.

    Args:
        sizes (int | Sequence[int]): Resolutions in pixels.
        name (str): The argument name used in error messages.

    Returns:
        tuple[int]: Unique positive sizes, largest first (unsorted input is
        sorted; the method's branch order is always largest first).

    Raises:
        TypeError: If ``sizes`` is not a sequence of integers.
        ValueError: If it is empty, has non-positive values or duplicates.
    """
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = [sizes]
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise TypeError(f'{name} must be a list of integer resolutions, '
                        f'got {sizes!r}; write it as e.g. {name}=[224, 160]')
    sizes = list(sizes)
    if not sizes:
        raise ValueError(f'{name} must contain at least one resolution, '
                         f'got {sizes!r}; give e.g. {name}=[224, 160]')
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f'{name} must contain integer resolutions in '
                            f'pixels, got {size!r} in {sizes!r}; round it to '
                            'a whole number of pixels')
        if size <= 0:
            raise ValueError(f'{name} must contain positive resolutions, got '
                             f'{size!r} in {sizes!r}; remove it')
    duplicates = sorted({s for s in sizes if sizes.count(s) > 1})
    if duplicates:
        raise ValueError(f'{name} must not repeat a resolution, got '
                         f'{duplicates} more than once in {sizes!r}; list '
                         'each size once')
    return tuple(sorted((int(s) for s in sizes), reverse=True))


class ScaleEncoder:
    """Maps a resolution to its scale encoding and to its training neighbours.

    Args:
        train_sizes (Sequence[int]): Training resolutions (any order; kept
            largest first).
        max_encoding (float): Encoding of ``reference_size``. Defaults to 0.7
            (the official value for 224).
        reference_size (int, optional): Resolution that gets
            ``max_encoding``. Defaults to ``max(train_sizes)``.

    Example:
        >>> encoder = ScaleEncoder([224, 192, 160, 128, 96])
        >>> [round(encoder.encode(r), 4) for r in (224, 208, 96)]
        [0.7, 0.65, 0.3]
        >>> encoder.neighbours(208)
        (192, 224, 0.5)
    """

    def __init__(self,
                 train_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
                 max_encoding: float = 0.7,
                 reference_size: Optional[int] = None):
        self.train_sizes = validate_sizes(train_sizes)
        if not isinstance(max_encoding, numbers.Real) or max_encoding <= 0:
            raise ValueError(
                'scale_encoding: max_encoding must be a positive number, got '
                f'{max_encoding!r}; the official value is 0.7 (the encoding '
                'of the largest training size)')
        if reference_size is None:
            reference_size = self.train_sizes[0]
        validate_sizes([reference_size], 'reference_size')
        self.max_encoding = float(max_encoding)
        self.reference_size = int(reference_size)
        # ascending copy for neighbours()
        self._ascending: Tuple[int, ...] = tuple(sorted(self.train_sizes))

    def encode(self, size: int) -> float:
        """Scale encoding of a resolution: ``max_encoding * size / reference_size``."""
        if type(size) is not int or size <= 0:  # every forward: check cheaply
            validate_sizes([size], 'size')
        return self.max_encoding * size / self.reference_size

    def index(self, size: int) -> int:
        """Branch index of a training size (0 is the largest).

        Raises:
            ValueError: If ``size`` is not a training size.
        """
        try:
            return self.train_sizes.index(size)
        except ValueError:
            raise ValueError(f'{size!r} is not a training size; training sizes '
                             f'are {list(self.train_sizes)}') from None

    def nearest(self, size: int) -> int:
        """The training size closest to ``size`` (ties go to the larger size,
        whose branch saw more detail)."""
        validate_sizes([size], 'size')
        return min(self.train_sizes, key=lambda t: (abs(t - size), -t))

    def neighbours(self, size: int) -> Tuple[int, int, float]:
        """The training sizes bracketing ``size`` and the interpolation weight.

        Returns:
            tuple: ``(lower, upper, alpha)`` with ``size = lower + alpha *
            (upper - lower)``, i.e. ``alpha = (size - lower) / (upper -
            lower)``. At a training size ``lower == upper`` and alpha is 1.
            Outside the trained range both neighbours are the nearest end
            (see :meth:`in_range`).
        """
        validate_sizes([size], 'size')
        asc = self._ascending
        if size <= asc[0]:
            return asc[0], asc[0], 1.0
        if size >= asc[-1]:
            return asc[-1], asc[-1], 1.0
        # A linear scan, not bisect: a handful of sizes, and torch.compile
        # traces it (it cannot trace the C builtin _bisect).
        pos = next(i for i, s in enumerate(asc) if s >= size)
        if asc[pos] == size:
            return size, size, 1.0
        lower, upper = asc[pos - 1], asc[pos]
        return lower, upper, (size - lower) / (upper - lower)

    def in_range(self, size: int) -> bool:
        """Whether ``size`` lies within the trained resolutions."""
        return self._ascending[0] <= size <= self._ascending[-1]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(train_sizes='
                f'{list(self.train_sizes)}, max_encoding={self.max_encoding}, '
                f'reference_size={self.reference_size})')
