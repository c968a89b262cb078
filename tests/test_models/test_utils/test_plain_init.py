"""Initialising SAN from plain mmpretrain checkpoints: same function at every size."""
import pytest
import torch
from mmpretrain.registry import MODELS

PLAIN = {
    'resnet': (dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
               dict(type='MetaResNet', depth=18, stem_channels=8,
                    base_channels=8), 64),
    'mobilenet_v2': (dict(type='MobileNetV2', widen_factor=0.25),
                     dict(type='MetaMobileNetV2', widen_factor=0.25), 1280),
}
SIZES = [64, 48, 32]


def classifier(backbone, channels, classes=4, **kwargs):
    return MODELS.build(dict(
        type='SANClassifier' if backbone['type'].startswith('Meta')
        else 'ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=classes,
                  in_channels=channels), **kwargs))


def pretrained_plain(arch, tmp_path):
    plain_backbone, _, channels = PLAIN[arch]
    torch.manual_seed(0)
    plain = classifier(plain_backbone, channels)
    plain.init_weights()
    for module in plain.modules():  # BN as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f'{arch}.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    plain.eval()
    return plain, str(path)


@pytest.mark.parametrize('arch', list(PLAIN))
def test_classifier_init_equals_plain_at_every_training_size(arch, tmp_path):
    plain, path = pretrained_plain(arch, tmp_path)
    _, san_backbone, channels = PLAIN[arch]
    san = classifier(dict(san_backbone, train_sizes=SIZES), channels,
                     init_cfg=dict(type='PretrainedFromPlain', checkpoint=path))
    san.init_weights()
    san.eval()
    # Exact: the same float ops in the same order (kernel B + s * 0 == B, every
    # BN set a copy of the plain BN); measured 0 difference over 3 seeds x
    # {1, 2} threads, both architectures.
    for size in SIZES:
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(san(x, mode='tensor'),
                                       plain(x, mode='tensor'),
                                       atol=0, rtol=0)
    assert all(torch.count_nonzero(c.weight_residual) == 0
               for c in san.backbone.meta_convs())


def test_backbone_init_cfg_keeps_a_new_head(tmp_path):
    plain, path = pretrained_plain('resnet', tmp_path)
    _, san_backbone, channels = PLAIN['resnet']
    san = classifier(dict(san_backbone, train_sizes=SIZES,
                          init_cfg=dict(type='PretrainedFromPlain',
                                        checkpoint=path, prefix='backbone.')),
                     channels, classes=9)
    san.init_weights()
    san.eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():  # exact, as above (measured 0)
        torch.testing.assert_close(san.extract_feat(x), plain.extract_feat(x),
                                   atol=0, rtol=0)
    assert san.head.fc.out_features == 9


def test_architecture_mismatch_is_refused(tmp_path):
    _, path = pretrained_plain('resnet', tmp_path)
    san = classifier(dict(type='MetaResNet', depth=18, stem_channels=16,
                          base_channels=16, train_sizes=SIZES), 128,
                     init_cfg=dict(type='PretrainedFromPlain', checkpoint=path))
    with pytest.raises(KeyError, match='no counterpart of the same shape.*'
                       'check that the config builds the same architecture'):
        san.init_weights()


def test_single_size_san_baseline_counts_as_plain(tmp_path):
    torch.manual_seed(0)
    baseline = classifier(dict(type='MetaResNet', depth=18, stem_channels=8,
                               base_channels=8, train_sizes=[48],
                               use_meta_network=False), 64)
    path = tmp_path / 'single.pth'
    torch.save({'state_dict': baseline.state_dict()}, path)
    san = classifier(dict(type='MetaResNet', depth=18, stem_channels=8,
                          base_channels=8, train_sizes=SIZES), 64,
                     init_cfg=dict(type='PretrainedFromPlain',
                                   checkpoint=str(path)))
    san.init_weights()
    baseline.eval()
    san.eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():  # exact: B + s * 0 == B, BN sets are copies
        torch.testing.assert_close(san(x, mode='tensor'),
                                   baseline(x, mode='tensor'), atol=0, rtol=0)
    multi = tmp_path / 'multi.pth'
    torch.save({'state_dict': san.state_dict()}, multi)
    other = classifier(dict(type='MetaResNet', depth=18, stem_channels=8,
                            base_channels=8, train_sizes=SIZES), 64,
                       init_cfg=dict(type='PretrainedFromPlain',
                                     checkpoint=str(multi)))
    with pytest.raises(ValueError, match='not a plain network'):
        other.init_weights()
    with pytest.raises(ValueError, match=(
            r'checkpoint .*multi\.pth is a SAN model \(3 private BN sets, '
            r"generated convs\), not a plain network: load it with "
            r"init_cfg=dict\(type='Pretrained', checkpoint=\.\.\.\) or "
            r'load_from instead of PretrainedFromPlain')):
        other.init_weights()


def test_classifier_checkpoint_into_backbone_without_prefix_is_refused(
        tmp_path):
    # Without prefix nothing matched, and the backbone stayed as built.
    _, path = pretrained_plain('resnet', tmp_path)
    _, san_backbone, channels = PLAIN['resnet']
    san = MODELS.build(dict(san_backbone, train_sizes=SIZES, init_cfg=dict(
        type='PretrainedFromPlain', checkpoint=path)))
    with pytest.raises(KeyError, match=(
            r"no counterpart of the same shape in checkpoint .*resnet\.pth.*"
            r"its keys start with 'backbone\.' \(a classifier checkpoint\): "
            r"add prefix='backbone\.'")):
        san.init_weights()
