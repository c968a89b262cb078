"""san_mm registers into mmpretrain's registries, so configs keep ``default_scope='mmpretrain'``."""
from mmpretrain.registry import HOOKS, LOOPS, METRICS, MODELS, TRANSFORMS

__all__ = ['HOOKS', 'LOOPS', 'METRICS', 'MODELS', 'TRANSFORMS']
