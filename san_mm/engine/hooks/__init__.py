from .lossless_resume_hook import LosslessResumeHook
from .per_size_bn_hook import PerSizeBNHook

__all__ = ['LosslessResumeHook', 'PerSizeBNHook']
