from .config_utils import (apply_size_overrides, iter_transforms,
                           with_transform_arg)

__all__ = ['apply_size_overrides', 'iter_transforms', 'with_transform_arg']
