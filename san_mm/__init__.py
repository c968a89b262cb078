"""san_mm: Scale Adaptive Networks (SAN, ECCV 2020) as an MMPretrain plugin.

Importing the package registers its modules in mmpretrain's registries and applies the
checkpoint-loading policy (see :mod:`san_mm.checkpoint`).
"""
import warnings

# mmcv-lite has no compiled ops; mmpretrain (and san_mm) never use them, so the
# warning mmcv prints about a missing deformable-attention op is noise here.
warnings.filterwarnings(
    'ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .version import __version__  # noqa: E402
from . import checkpoint  # noqa: E402,F401  (applies the loading policy once)
from . import models  # noqa: E402,F401
from . import datasets, engine  # noqa: E402,F401
from .apis.model_index import register_model_index  # noqa: E402

register_model_index()

__all__ = ['__version__']
