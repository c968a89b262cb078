from .config_utils import (apply_overrides, iter_transforms,
                           with_transform_arg)
from .random_states import (derived_seed, get_random_states,
                            get_resumable_random_states,
                            preserved_random_states, seeded_random_states,
                            set_random_states)

__all__ = [
    'apply_overrides', 'iter_transforms', 'with_transform_arg',
    'derived_seed', 'get_random_states', 'get_resumable_random_states',
    'set_random_states', 'preserved_random_states', 'seeded_random_states'
]
