"""Export to mmpretrain's own classes: equal logits at every size and mode."""
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from san_mm.apis.export import (build_plain_model, export_config,
                                export_state_dict, plain_backbone_cfg)

RESNET = dict(type='MetaResNet', depth=18, stem_channels=4, base_channels=4,
              train_sizes=[64, 48, 32])
CIFAR_RESNET = dict(RESNET, stem_kernel_size=3, stem_stride=1, stem_pool=False)
MOBILENET = dict(type='MetaMobileNetV2', widen_factor=0.25,
                 train_sizes=[64, 48, 32])


def san_model(backbone, in_channels):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='SANClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5,
                  in_channels=in_channels)))
    for bn in model.backbone.private_bns():
        for layer in bn.sets:  # distinct sets, as after training
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.normal_(0, 0.1)
            layer.running_mean.normal_(0, 0.1)
            layer.running_var.uniform_(0.5, 1.5)
    return model.eval()


def exported(model, size, mode=None):
    cfg = Config(dict(model=dict(type='SANClassifier', backbone={},
                                 head=dict(type='LinearClsHead',
                                           num_classes=5,
                                           in_channels=model.head.fc.in_features),
                                 neck=dict(type='GlobalAveragePooling')),
                      data_preprocessor=dict(mean=[0, 0, 0], std=[255] * 3),
                      test_dataloader=dict(dataset=dict(pipeline=[]))))
    state_dict, state = export_state_dict(model, size, mode)
    plain = build_plain_model(export_config(cfg, model, size))
    plain.load_state_dict(state_dict, strict=True)
    return plain.eval(), state


@pytest.mark.parametrize('backbone,channels', [(RESNET, 32), (CIFAR_RESNET, 32),
                                              (MOBILENET, 1280)],
                         ids=['ResNet', 'ResNet_CIFAR', 'MobileNetV2'])
@pytest.mark.parametrize('size,mode', [(64, None), (48, None), (32, None),
                                       (40, 'proxy'), (40, 'ideal'),
                                       (40, 'data_free'), (72, 'data_free')])
def test_exported_logits_equal_san(backbone, channels, size, mode):
    model = san_model(backbone, channels)
    plain, state = exported(model, size, mode)
    x = torch.rand(2, 3, size, size)
    model.backbone.inference_mode = mode or 'proxy'
    with torch.no_grad():
        expected = model(x, mode='tensor')
        got = plain(x, mode='tensor')
    # The exported model runs the same kernels (B + s * A computed once,
    # bit for bit) and BN tensors through the same ops: measured exactly 0
    # over every case x 3 inputs x 1 and 2 threads.
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert model.backbone.resolve_scale(size) == state


def test_calibrated_statistics_are_exported():
    model = san_model(RESNET, 32)
    with torch.no_grad(), model.backbone.calibrating(40):
        model.backbone(torch.rand(8, 3, 40, 40))
    model.backbone.inference_mode = 'calibrated'
    plain, state = exported(model, 40)
    assert state.bn.kind == 'calibrated'
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        # Same kernels and BN tensors, same ops: exact (measured 0).
        torch.testing.assert_close(plain(x, mode='tensor'),
                                   model(x, mode='tensor'), rtol=0, atol=0)


def test_plain_backbone_cfgs():
    resnet = MODELS.build(RESNET)
    assert plain_backbone_cfg(resnet)['type'] == 'ResNet'
    cifar = MODELS.build(CIFAR_RESNET)
    assert plain_backbone_cfg(cifar)['type'] == 'ResNet_CIFAR'
    small = MODELS.build(dict(RESNET, stem_kernel_size=3, stem_stride=2,
                              stem_pool=False))
    assert plain_backbone_cfg(small)['type'] == 'ResNetCustomStem'
    assert plain_backbone_cfg(MODELS.build(MOBILENET))['type'] == 'MobileNetV2'
    regnet = dict(type='RegNet', arch=dict(w0=8, wa=8, wm=1.5, group_w=8,
                                           depth=5, bot_mul=1.0),
                  stem_channels=8)
    built = MODELS.build(dict(type='ScaleAdaptive', backbone=regnet,
                              train_sizes=[64, 32]))
    assert plain_backbone_cfg(built) == regnet
    from san_mm.models import ScaleAdaptive
    from mmpretrain.models.backbones import ResNet
    with pytest.raises(ValueError, match='made from a built module'):
        plain_backbone_cfg(ScaleAdaptive(ResNet(18), train_sizes=[64, 32]))


def test_a_backbone_registered_elsewhere_keeps_its_import():
    model = san_model(dict(RESNET, stem_kernel_size=3, stem_stride=2,
                           stem_pool=False), 32)
    cfg = Config(dict(model=dict(type='SANClassifier'),
                      test_dataloader=dict(dataset=dict(pipeline=[]))))
    plain_cfg = export_config(cfg, model, 48)
    assert plain_cfg.custom_imports == dict(imports=['san_mm'],
                                            allow_failed_imports=False)
    assert 'custom_imports' not in export_config(cfg, san_model(RESNET, 32),
                                                 48)


def test_onnx_export_equals_the_plain_model_in_onnxruntime(tmp_path):
    from san_mm.apis.export import export_onnx
    model = san_model(dict(RESNET, meta_init='kaiming'), 32)
    plain, _ = exported(model, 48)
    x = torch.rand(1, 3, 48, 48)
    result = export_onnx(plain, x, str(tmp_path / 'm.onnx'))
    assert (tmp_path / 'm.onnx').stat().st_size > 0
    with torch.no_grad():
        scale = plain(x, mode='tensor').abs().max().item()
    # onnxruntime's convolutions sum in another order than torch's: measured
    # max |diff| 1.7e-6 at logits of scale 3 (5.6e-7 relative, 3 inputs x 1
    # and 2 threads); the bound is 18x that. A wrong kernel or BN set moves
    # logits by ~1e-1.
    assert result['onnx_max_abs_diff'] <= 1e-5 * max(scale, 1.0)
