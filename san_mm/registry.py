"""san_mm registers into mmpretrain's registries, so configs keep ``default_scope='mmpretrain'``."""
# mmpretrain 1.2 has no inferencer registry (its Inferencers are plain classes); mmengine's root
# one is the registry for inferencers across OpenMMLab.
from mmengine.registry import INFERENCERS
from mmpretrain.registry import HOOKS, LOOPS, METRICS, MODELS, TRANSFORMS

__all__ = ['HOOKS', 'INFERENCERS', 'LOOPS', 'METRICS', 'MODELS', 'TRANSFORMS']
