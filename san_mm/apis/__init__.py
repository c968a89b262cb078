from .cli import add_common_args, load_config, test_config, train_config
from .results import (format_mode_table, format_size_table,
                      split_size_metrics)
from .size_table import (NoSizeFitsError, SizeTableError, choose_size,
                         read_size_table, size_table_markdown,
                         validate_size_table, write_size_table)
from .sweep import (calibrate_checkpoint, evaluation_split, measure_latency,
                    store_size_table, sweep_sizes)
from .budgeted_inference import BudgetedInferencer, list_images

__all__ = [
    'add_common_args', 'load_config', 'test_config', 'train_config',
    'format_mode_table', 'format_size_table', 'split_size_metrics',
    'calibrate_checkpoint', 'evaluation_split', 'measure_latency',
    'sweep_sizes',
    'NoSizeFitsError', 'SizeTableError', 'choose_size', 'read_size_table',
    'size_table_markdown', 'store_size_table', 'validate_size_table',
    'write_size_table', 'BudgetedInferencer', 'list_images'
]
