from .meta_mobilenet_v2 import MetaMobileNetV2
from .meta_resnet import MetaResNet
from .resnet_stem import ResNetCustomStem
from .scale_adaptive import (GENERATED_CONVS, BaseScaleAdaptiveBackbone,
                             ScaleAdaptive, scale_adaptive_class)

__all__ = [
    'BaseScaleAdaptiveBackbone', 'GENERATED_CONVS', 'MetaMobileNetV2',
    'MetaResNet', 'ResNetCustomStem', 'ScaleAdaptive', 'scale_adaptive_class'
]
