from .cli import add_common_args, load_config, test_config, train_config
from .results import (format_mode_table, format_size_table,
                      split_size_metrics)
from .sweep import calibrate_checkpoint, sweep_sizes

__all__ = [
    'add_common_args', 'load_config', 'test_config', 'train_config',
    'format_mode_table', 'format_size_table', 'split_size_metrics',
    'calibrate_checkpoint', 'sweep_sizes'
]
