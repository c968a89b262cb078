"""san_mm: Scale Adaptive Networks (SAN, ECCV 2020) as an MMPretrain plugin.

Importing the package registers its modules in mmpretrain's registries and applies the
checkpoint-loading policy (see :mod:`san_mm.checkpoint`).
"""
import logging
import warnings

# Warnings a user of the tools cannot act on: mmcv-lite has no compiled ops
# (mmpretrain and san_mm never use them); mmengine 0.10.7 imports
# pkg_resources (setuptools<81 keeps it, requirements/runtime.txt); torch
# looks for a CUDA toolkit when mmcv imports its extension helpers.
warnings.filterwarnings(
    'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                        category=UserWarning)
logging.getLogger('torch.utils.cpp_extension').setLevel(logging.ERROR)

from .version import __version__  # noqa: E402
from . import checkpoint  # noqa: E402,F401  (applies the loading policy once)
from . import models  # noqa: E402,F401
from . import datasets, engine  # noqa: E402,F401
from .apis.model_index import register_model_index  # noqa: E402

register_model_index()

__all__ = ['__version__']
