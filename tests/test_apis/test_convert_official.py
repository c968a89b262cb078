"""Reference (d-li14/SAN) checkpoints -> san_mm, checked against the reference's semantics."""

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from san_mm.apis.convert_official import (convert_official_state_dict,
                                          load_official)
from tests.conftest import REPO, run_tool

SIZES = [64, 48, 32]
ENCODINGS = [0.7, 0.525, 0.35]  # 0.7 * r / 64


def bn(sd, name, channels, num_sets=3):
    for k in range(num_sets):
        sd[f'module.{name}.bn_{k}.weight'] = torch.rand(channels) + 0.5
        sd[f'module.{name}.bn_{k}.bias'] = torch.randn(channels) * 0.1
        sd[f'module.{name}.bn_{k}.running_mean'] = torch.randn(channels) * 0.1
        sd[f'module.{name}.bn_{k}.running_var'] = torch.rand(channels) + 0.5
        sd[f'module.{name}.bn_{k}.num_batches_tracked'] = torch.tensor(7)


def meta(sd, name, shape):
    numel = torch.Size(shape).numel()
    sd[f'module.{name}.weight'] = torch.randn(numel, 1) * 0.1
    sd[f'module.{name}.bias'] = torch.randn(numel) * 0.1


def official_resnet(depth, width=4, classes=5):
    """A state dict in the reference layout (with its dead downsample)."""
    torch.manual_seed(0)
    bottleneck = depth == 50
    blocks = (2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3)
    expansion = 4 if bottleneck else 1
    sd = {'module.conv1.module.weight': torch.randn(width, 3, 7, 7) * 0.1}
    bn(sd, 'bn1', width)
    layout = []
    inplanes = width
    for stage, count in enumerate(blocks, start=1):
        planes = width * 2**(stage - 1)
        for index in range(count):
            name = f'layer{stage}.{index}'
            stride = 2 if stage > 1 and index == 0 else 1
            if bottleneck:
                convs = [(inplanes, planes, 1, 1), (planes, planes, 3, stride),
                         (planes, planes * 4, 1, 1)]
            else:
                convs = [(inplanes, planes, 3, stride), (planes, planes, 3, 1)]
            for i, (cin, cout, k, _) in enumerate(convs, start=1):
                meta(sd, f'{name}.fc{i}', (cout, cin, k, k))
                bn(sd, f'{name}.bn{i}', cout)
            shortcut = None
            if stride != 1 or inplanes != planes * expansion:
                shortcut = len(convs) + 1
                meta(sd, f'{name}.fc{shortcut}',
                     (planes * expansion, inplanes, 1, 1))
                bn(sd, f'{name}.bn{shortcut}', planes * expansion)
                # the reference's unused module
                sd[f'module.{name}.downsample.0.weight'] = torch.randn(
                    planes * expansion, inplanes, 1, 1)
            layout.append((name, convs, shortcut, stride, inplanes,
                           planes * expansion))
            inplanes = planes * expansion
    sd['module.fc.module.weight'] = torch.randn(classes, inplanes) * 0.1
    sd['module.fc.module.bias'] = torch.randn(classes) * 0.1
    return sd, layout


def reference_forward(sd, layout, x, branch):
    """The reference ResNet's forward, read directly off its layout."""
    s = ENCODINGS[branch]

    def conv(name, x, shape, stride):
        kernel = (sd[f'module.{name}.bias'] +
                  s * sd[f'module.{name}.weight'][:, 0]).view(shape)
        return F.conv2d(x, kernel, stride=stride, padding=shape[-1] // 2)

    def norm(name, x):
        p = f'module.{name}.bn_{branch}.'
        return F.batch_norm(x, sd[p + 'running_mean'], sd[p + 'running_var'],
                            sd[p + 'weight'], sd[p + 'bias'], False, 0., 1e-5)

    x = F.conv2d(x, sd['module.conv1.module.weight'], stride=2, padding=3)
    x = F.max_pool2d(F.relu(norm('bn1', x)), 3, 2, 1)
    for name, convs, shortcut, stride, cin, cout in layout:
        out = x
        for i, (ci, co, k, st) in enumerate(convs, start=1):
            out = norm(f'{name}.bn{i}', conv(f'{name}.fc{i}', out,
                                             (co, ci, k, k), st))
            if i < len(convs):
                out = F.relu(out)
        identity = x
        if shortcut:
            identity = norm(f'{name}.bn{shortcut}',
                            conv(f'{name}.fc{shortcut}', x, (cout, cin, 1, 1),
                                 stride))
        x = F.relu(out + identity)
    x = x.mean((2, 3))
    return F.linear(x, sd['module.fc.module.weight'], sd['module.fc.module.bias'])


def san(backbone):
    backbone = dict(backbone, train_sizes=SIZES)
    feat = backbone.pop('_feat')
    return MODELS.build(dict(
        type='SANClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=feat)))


@pytest.mark.parametrize('depth,feat', [(18, 32), (50, 128)])
def test_resnet_conversion_matches_reference_semantics(depth, feat):
    sd, layout = official_resnet(depth)
    model = san(dict(type='MetaResNet', depth=depth, stem_channels=4,
                     base_channels=4, _feat=feat))
    load_official(model, sd, f'resnet{depth}')
    model.eval()
    conv = model.backbone.layer2[0].conv1
    # Converted tensors are copies: exact.
    torch.testing.assert_close(conv.weight.flatten(),
                               sd['module.layer2.0.fc1.bias'], atol=0, rtol=0)
    torch.testing.assert_close(conv.weight_residual.flatten(),
                               sd['module.layer2.0.fc1.weight'][:, 0],
                               atol=0, rtol=0)
    torch.testing.assert_close(model.backbone.bn1.sets[2].running_var,
                               sd['module.bn1.bn_2.running_var'], atol=0,
                               rtol=0)
    # The reference forward differs from ours only by rounding (its kernel
    # is bias + s * weight, ours torch.add(B, A, alpha=s); x.mean((2, 3)) vs
    # the pooling neck): measured <= 3.6e-7 on logits of up to 1.0 over 3
    # seeds x {1, 2} threads, both depths. Default float32 tolerance (atol
    # 1e-5 + rtol 1.3e-6): >= 25x that; a wrong BN set or encoding moves the
    # logits by >= 1e-2.
    for branch, size in enumerate(SIZES):
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            ours = model(x, mode='tensor')
            reference = reference_forward(sd, layout, x, branch)
        torch.testing.assert_close(ours, reference)


def test_mobilenet_v2_conversion_maps_every_key():
    model = san(dict(type='MetaMobileNetV2', widen_factor=0.25, _feat=1280))
    # build the reference layout from the model's own shapes
    sd = {}
    names = {'backbone.conv1': 'features.0', 'backbone.conv2': 'conv'}
    feature = 1
    for layer in range(1, 8):
        for index, block in enumerate(getattr(model.backbone, f'layer{layer}')):
            for i in range(len(block.conv)):
                names[f'backbone.layer{layer}.{index}.conv.{i}'] = \
                    f'features.{feature}.#{i + 1}'
            feature += 1
    for ours, theirs in names.items():
        module = model.get_submodule(ours)
        fc = theirs.replace('#', 'fc') if '#' in theirs else f'{theirs}.fc'
        norm = theirs.replace('#', 'bn') if '#' in theirs else f'{theirs}.bn'
        meta(sd, fc, module.conv.weight.shape)
        bn(sd, norm, module.conv.weight.shape[0])
    sd['module.classifier.module.weight'] = torch.randn(5, 1280)
    sd['module.classifier.module.bias'] = torch.randn(5)
    load_official(model, sd, 'mobilenetv2')
    # Converted tensors are copies: exact.
    torch.testing.assert_close(
        model.backbone.layer3[1].conv[1].conv.weight_residual.flatten(),
        sd['module.features.5.fc2.weight'][:, 0], atol=0, rtol=0)
    torch.testing.assert_close(model.backbone.conv2.bn.sets[1].bias,
                               sd['module.conv.bn.bn_1.bias'], atol=0, rtol=0)


def test_mismatches_are_reported():
    sd, _ = official_resnet(18)
    with pytest.raises(ValueError, match="unknown arch 'resnet19'"):
        convert_official_state_dict(sd, 'resnet19')
    extra = dict(sd, **{'module.layer9.0.fc1.weight': torch.zeros(1, 1)})
    with pytest.raises(ValueError, match='layer9'):
        convert_official_state_dict(extra, 'resnet18')
    model = MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', depth=18, stem_channels=4,
                      base_channels=4, train_sizes=[64, 32]),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))
    with pytest.raises(ValueError, match='3 private BN sets.*2 training sizes'):
        load_official(model, sd, 'resnet18')
    with pytest.raises(ValueError, match='not a checkpoint of the reference'):
        convert_official_state_dict({'module.fc.weight': torch.zeros(1)},
                                    'resnet18')


def test_tool_end_to_end(tmp_path):
    sd, _ = official_resnet(18)
    src = tmp_path / 'official.pth.tar'
    torch.save({'epoch': 120, 'arch': 'resnet18', 'state_dict': sd,
                'best_prec1': torch.tensor(70.1)}, src)
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = ['{REPO}/configs/san_resnet18.py']\n"
        "model = dict(backbone=dict(stem_channels=4, base_channels=4, "
        "train_sizes=[64, 48, 32]), head=dict(num_classes=5, in_channels=32))\n")
    dst = tmp_path / 'converted.pth'
    run_tool('convert_official.py', src, dst, '--arch', 'resnet18',
             '--config', config)
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['epoch'] == 120
    assert 'backbone.layer1.0.conv1.weight_residual' in converted['state_dict']
