from .per_size_bn_hook import PerSizeBNHook

__all__ = ['PerSizeBNHook']
