"""Resolution transforms: one crop seen at every training size; a centre crop at any test size."""
from typing import Sequence, Tuple

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.datasets.transforms import (CenterCrop, RandomResizedCrop,
                                            ResizeEdge)
from mmpretrain.registry import TRANSFORMS

from san_mm.models.utils import validate_sizes


@TRANSFORMS.register_module()
class ResolutionSample(RandomResizedCrop):
    """One random resized crop per image, resized to every training size.

    This is the SAN training protocol: the geometry of the crop (scale
    ``crop_ratio_range``, aspect ratio ``aspect_ratio_range``) is drawn once,
    then the crop is resized to each size (largest first) and each resized
    view is flipped horizontally on its own coin. ``PackInputs`` packs the
    result into a list of tensors, one per size, which ``default_collate``
    turns into a list of batches and :class:`SANDataPreprocessor` normalises.

    Every size is always produced: a batch must share its sizes, so cheaper
    training on a subset of sizes is drawn per iteration by
    :class:`SANClassifier` (``num_sampled_sizes``), not per image.

    **Required Keys:** img. **Modified Keys:** img (list of arrays, largest
    first), img_shape (list). **Added Keys:** crop_bbox (x1, y1, x2, y2),
    flip (list of bool), resolution_sizes.

    Args:
        sizes (Sequence[int]): Output sizes; kept largest first.
        crop_ratio_range (tuple): Range of the crop area relative to the
            image. Defaults to (0.08, 1.0).
        aspect_ratio_range (tuple): Range of the crop aspect ratio.
        max_attempts (int): Attempts before falling back to a centre crop.
        interpolation (str): Resize interpolation. Defaults to 'bilinear'.
        backend (str): 'cv2' or 'pillow'. Defaults to 'cv2'.
        flip_prob (float): Probability of flipping each view. Defaults to 0.5.
    """

    def __init__(self,
                 sizes: Sequence[int],
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 interpolation: str = 'bilinear',
                 backend: str = 'cv2',
                 flip_prob: float = 0.5):
        self.sizes = validate_sizes(sizes, 'sizes')
        if not 0 <= flip_prob <= 1:
            raise ValueError('ResolutionSample: flip_prob must be a '
                             f'probability in [0, 1], got {flip_prob!r}')
        super().__init__(self.sizes[0], crop_ratio_range, aspect_ratio_range,
                         max_attempts, interpolation, backend)
        self.flip_prob = flip_prob

    def set_sizes(self, sizes: Sequence[int]) -> None:
        """Produce ``sizes`` from now on (e.g. one size per BN calibration,
        without rebuilding the dataset)."""
        self.sizes = validate_sizes(sizes, 'sizes')
        self.scale = (self.sizes[0], self.sizes[0])

    @cache_randomness
    def rand_flips(self) -> list:
        return [bool(np.random.rand() < self.flip_prob) for _ in self.sizes]

    def transform(self, results: dict) -> dict:
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise ValueError(
                'ResolutionSample expects one image as an (H, W) or (H, W, C) '
                f'array, got {type(img).__name__} with shape '
                f'{getattr(img, "shape", None)} '
                f'(image: {results.get("img_path", "<in memory>")}); put it '
                'right after LoadImageFromFile in the pipeline, before any '
                'transform that batches, crops into several views or packs')
        offset_h, offset_w, height, width = self.rand_crop_params(img)
        crop = img[offset_h:offset_h + height, offset_w:offset_w + width]
        views, flips = [], self.rand_flips()
        for size, flip in zip(self.sizes, flips):
            view = mmcv.imresize(crop, (size, size),
                                 interpolation=self.interpolation,
                                 backend=self.backend)
            if flip:
                view = mmcv.imflip(view, direction='horizontal')
            views.append(view)
        results['img'] = views
        results['img_shape'] = [view.shape[:2] for view in views]
        results['crop_bbox'] = (offset_w, offset_h, offset_w + width,
                                offset_h + height)
        results['flip'] = flips
        results['resolution_sizes'] = self.sizes
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sizes={list(self.sizes)}, '
                f'crop_ratio_range={self.crop_ratio_range}, '
                f'aspect_ratio_range={self.aspect_ratio_range}, '
                f'interpolation={self.interpolation}, backend={self.backend}, '
                f'flip_prob={self.flip_prob})')


@TRANSFORMS.register_module()
class ResizeCenterCrop(BaseTransform):
    """Test-time view at resolution ``size``: resize the shorter side to
    ``int(size / crop_ratio)``, then centre-crop ``size`` x ``size``.

    With the default ``crop_ratio=0.875`` this is the reference's validation
    protocol (256 -> 224, 219 -> 192, ...). The multi-size test loops set
    ``size`` for each evaluated resolution.

    Args:
        size (int): Output resolution.
        crop_ratio (float): Crop size relative to the resized shorter side,
            in (0, 1]. Defaults to 0.875.
        interpolation (str): Resize interpolation. Defaults to 'bilinear'.
        backend (str): 'cv2' or 'pillow'. Defaults to 'cv2'.
    """

    def __init__(self,
                 size: int,
                 crop_ratio: float = 0.875,
                 interpolation: str = 'bilinear',
                 backend: str = 'cv2'):
        (self.size, ) = validate_sizes([size], 'size')
        if not 0 < crop_ratio <= 1:
            raise ValueError(
                'ResizeCenterCrop: crop_ratio (crop size / resized shorter '
                f'side) must be in (0, 1], got {crop_ratio!r}; the usual '
                'ImageNet value is 0.875 (256 -> 224)')
        self.crop_ratio = crop_ratio
        self.interpolation = interpolation
        self.backend = backend
        self.set_size(self.size)

    def set_size(self, size: int) -> None:
        """Produce ``size`` from now on (e.g. one size per BN calibration,
        without rebuilding the dataset)."""
        (self.size, ) = validate_sizes([size], 'size')
        self.resize = ResizeEdge(scale=int(self.size / self.crop_ratio),
                                 edge='short', backend=self.backend,
                                 interpolation=self.interpolation)
        self.crop = CenterCrop(crop_size=self.size)

    def transform(self, results: dict) -> dict:
        return self.crop(self.resize(results))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'crop_ratio={self.crop_ratio})')
