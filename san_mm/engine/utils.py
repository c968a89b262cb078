"""Finding the SAN model and backbone behind a runner's (possibly wrapped) model."""
from mmengine.model import is_model_wrapper

from san_mm.models.backbones import BaseScaleAdaptiveBackbone


def unwrap_model(runner):
    """``runner.model`` without its DDP / FSDP wrapper."""
    return runner.model.module if is_model_wrapper(
        runner.model) else runner.model


def scale_adaptive_backbone(runner, user: str) -> BaseScaleAdaptiveBackbone:
    """The runner's SAN backbone; ``TypeError`` naming ``user`` otherwise."""
    backbone = getattr(unwrap_model(runner), 'backbone', None)
    if not isinstance(backbone, BaseScaleAdaptiveBackbone):
        raise TypeError(
            f'{user} needs a model with a scale-adaptive backbone '
            f'(MetaResNet, MetaMobileNetV2), got backbone '
            f'{type(backbone).__name__}, '
            'which has no per-size BN; use a SAN config (e.g. '
            'configs/san_resnet18.py)')
    return backbone
