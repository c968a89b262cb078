"""What the eval-mode caches of derived tensors share: when they are dropped.

Two SAN layers cache tensors computed from their parameters for inference: MetaConv2d its
generated kernels ``B + s * A``, PrivateBatchNorm2d its data-free blends of two BN sets. Each
cache checks on use that the tensors it was derived from are unchanged (version counters for
in-place updates, data pointers for replaced tensors); this mixin covers every other way the
source can change, in one place.
"""
from typing import Callable, Dict


class DerivedTensorCacheMixin:
    """Drops a module's derived-tensor cache whenever it may be stale.

    Cleared on ``train()`` / ``eval()``, on ``.to()`` / ``.cuda()`` /
    ``.half()`` (they go through ``_apply``) and on ``load_state_dict``; never
    pickled or deep-copied (derived data, rebuilt on first use). Put the mixin
    before the ``nn.Module`` base class.

    Attributes:
        derived_cache_attrs (dict[str, Callable]): Each cache attribute and a
            factory of its empty value.
    """

    derived_cache_attrs: Dict[str, Callable[[], object]] = {}

    def clear_derived_cache(self) -> None:
        for name, empty in self.derived_cache_attrs.items():
            setattr(self, name, empty())

    def train(self, mode: bool = True):
        self.clear_derived_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.clear_derived_cache()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_derived_cache()
        return super()._load_from_state_dict(*args, **kwargs)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.update({name: empty()
                      for name, empty in self.derived_cache_attrs.items()})
        return state
