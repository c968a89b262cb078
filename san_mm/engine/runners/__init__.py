from .multi_size_loops import MultiSizeTestLoop, MultiSizeValLoop
from .resumable_train_loop import ResumableEpochBasedTrainLoop

__all__ = [
    'MultiSizeTestLoop', 'MultiSizeValLoop', 'ResumableEpochBasedTrainLoop'
]
