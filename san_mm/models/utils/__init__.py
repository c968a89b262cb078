from .data_preprocessor import SANDataPreprocessor
from .meta_conv import META_INITS, MetaConv2d, check_meta_init
from .plain_init import (PretrainedFromPlainInit, load_plain_into_san,
                         plain_to_san_state_dict)
from .private_bn import PrivateBatchNorm2d
from .scale_encoding import DEFAULT_TRAIN_SIZES, ScaleEncoder, validate_sizes
from .scale_policy import (INFERENCE_MODES, BNSelection, ScaleContext,
                           ScalePolicy, ScaleState, check_inference_mode)

__all__ = [
    'SANDataPreprocessor', 'PretrainedFromPlainInit', 'load_plain_into_san',
    'plain_to_san_state_dict', 'META_INITS', 'MetaConv2d', 'check_meta_init', 'PrivateBatchNorm2d', 'DEFAULT_TRAIN_SIZES',
    'ScaleEncoder', 'validate_sizes', 'INFERENCE_MODES', 'BNSelection',
    'ScaleContext', 'ScalePolicy', 'ScaleState', 'check_inference_mode'
]
