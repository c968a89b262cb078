from .base_san import BaseScaleAdaptiveBackbone
from .meta_mobilenet_v2 import MetaMobileNetV2
from .meta_resnet import MetaResNet

__all__ = ['BaseScaleAdaptiveBackbone', 'MetaMobileNetV2', 'MetaResNet']
