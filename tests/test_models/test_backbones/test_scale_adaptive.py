"""ScaleAdaptive on mmpretrain's CNN backbones: each one trains at K sizes, runs every inference
mode, exports to its plain self, starts from a plain checkpoint and compiles without graph breaks.

Each backbone is a tiny instance (custom arch dicts, few channels) at small sizes valid for it
(``docs/any_backbone.md`` lists them)."""
import copy
import re

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from san_mm.apis.export import (build_plain_model, export_config,
                                export_state_dict)
from san_mm.models import BaseScaleAdaptiveBackbone, ScaleAdaptive
from san_mm.models.utils import MetaConv2d, PrivateBatchNorm2d
from san_mm.models.utils.plain_init import plain_source_key

TINY_HRNET = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK',
                num_blocks=(1, ), num_channels=(8, )),
    stage2=dict(num_modules=1, num_branches=2, block='BASIC',
                num_blocks=(1, 1), num_channels=(4, 8)),
    stage3=dict(num_modules=1, num_branches=3, block='BASIC',
                num_blocks=(1, 1, 1), num_channels=(4, 8, 16)),
    stage4=dict(num_modules=1, num_branches=4, block='BASIC',
                num_blocks=(1, 1, 1, 1), num_channels=(4, 8, 16, 32)))

#: name: (plain backbone config, training sizes, an unseen size between them,
#: channels of the last output). Sizes: total stride 32 (16 for the dilated
#: ResNetV1d), so at least 17 px; DenseNet's transitions average-pool 2x2
#: without padding (24 px leaves a 1x1 map before the last one: 32 and
#: more), HRNet's branches must halve evenly four times (multiples of 32).
BACKBONES = {
    # the last stage dilated instead of strided (DeepLab's output stride 16)
    'ResNetV1d': (dict(type='ResNetV1d', depth=18, stem_channels=8,
                       base_channels=4, strides=(1, 2, 2, 1),
                       dilations=(1, 1, 1, 2)), [32, 24], 28, 32),
    'ResNeXt': (dict(type='ResNeXt', depth=50, groups=2, width_per_group=2,
                     stem_channels=8, base_channels=4), [32, 24], 28, 128),
    'SEResNet': (dict(type='SEResNet', depth=50, se_ratio=4, stem_channels=8,
                      base_channels=4), [32, 24], 28, 128),
    'RegNet': (dict(type='RegNet', arch=dict(w0=8, wa=8, wm=1.5, group_w=8,
                                             depth=5, bot_mul=1.0),
                    stem_channels=8), [32, 24], 28, 40),
    'MobileNetV3': (dict(type='MobileNetV3', arch='small'), [32, 24], 28,
                    576),
    'EfficientNet': (dict(type='EfficientNet', arch='b0'), [32, 24], 28,
                     1280),
    'ShuffleNetV2': (dict(type='ShuffleNetV2', widen_factor=0.5), [32, 24],
                     28, 1024),
    'DenseNet': (dict(type='DenseNet', arch=dict(
        growth_rate=4, depths=[1, 1, 1, 1], init_channels=8)), [48, 32], 40,
                 8),
    'HRNet': (dict(type='HRNet', extra=TINY_HRNET), [96, 32], 64, 32),
    'RepVGG': (dict(type='RepVGG', arch=dict(
        num_blocks=[1, 1, 1, 1], width_factor=[0.25] * 4,
        group_layer_map=None, se_cfg=None)), [32, 24], 28, 128),
}
NAMES = list(BACKBONES)


def classifier(name, seed=0, **backbone_kwargs):
    """A SANClassifier with ``ScaleAdaptive(<name>)`` and a 3-class head."""
    plain, sizes, _, channels = BACKBONES[name]
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='ScaleAdaptive', backbone=copy.deepcopy(plain),
                      train_sizes=sizes, **backbone_kwargs),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=channels)))


def images(size, n=2, seed=1):
    return torch.rand(n, 3, size, size,
                      generator=torch.Generator().manual_seed(seed))


def labels(n=2):
    return [DataSample().set_gt_label(i % 3) for i in range(n)]


@torch.no_grad()
def trained_like(model, sizes=None):
    """``model`` (a classifier) with its tensors as after training: every
    BN (each private set) with its own affine parameters and running
    statistics of images at ``sizes`` (default: the training sizes; one
    train-mode forward at each, a set sees its own size), A of the scale of
    B in every generated conv. In eval mode."""
    backbone = model.backbone
    if sizes is None:
        sizes = backbone.train_sizes
    for conv in backbone.modules():
        if isinstance(conv, MetaConv2d):
            conv.weight_residual.copy_(
                torch.randn_like(conv.weight) * conv.weight.std())
    bns = [m for m in backbone.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.1)
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average
    backbone.train()
    for size in sizes:
        backbone(images(size, n=4, seed=size))
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return model.eval()


def logits(model, x, mode=None):
    if mode is not None:
        model.backbone.inference_mode = mode
    with torch.no_grad():
        return model(x, mode='tensor')


def plain_classifier(name, seed=0):
    """The plain mmpretrain classifier of :func:`classifier`."""
    plain, _, _, channels = BACKBONES[name]
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='ImageClassifier', backbone=copy.deepcopy(plain),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=channels)))


@pytest.mark.parametrize('name', NAMES)
def test_training_step_at_every_size_reaches_every_parameter(name):
    # What should get a gradient: what does in the plain classifier (all
    # but HRNet's last fuse layers into the three branches the head does
    # not read).
    plain = plain_classifier(name).train()
    sizes = BACKBONES[name][1]
    plain.loss(images(sizes[0]), labels())['loss'].backward()
    expected = {n for n, p in plain.named_parameters() if p.grad is not None}
    model = classifier(name).train()
    losses = model.loss([images(size) for size in sizes], labels())
    assert set(losses) == ({f'loss_ce@{s}' for s in sizes}
                           | {f'loss_kd@{s}' for s in sizes[1:]})
    sum(losses.values()).backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    assert {plain_source_key(n).replace('weight_residual', 'weight')
            for n in reached} == expected
    # Every size's private BN set and every generated conv's A (zero at the
    # start, as the plain network) get a gradient that is not zero.
    residuals = [n for n in reached if n.endswith('weight_residual')]
    assert residuals and all(
        model.get_parameter(n).grad.abs().sum() > 0 for n in residuals)
    for name_ in expected:
        if name_.endswith('.weight') and isinstance(
                plain.get_submodule(name_[:-len('.weight')]),
                nn.modules.batchnorm._BatchNorm):
            for index in range(len(sizes)):
                grad = model.get_parameter(name_.replace(
                    '.weight', f'.sets.{index}.weight')).grad
                assert grad.abs().sum() > 0, (name_, index)
    for bn in model.backbone.private_bns():  # one forward per size
        assert [int(s.num_batches_tracked) for s in bn.sets] == [1] * len(
            sizes)


@pytest.mark.parametrize('name', NAMES)
def test_inference_modes_differ_at_an_unseen_size(name):
    model = trained_like(classifier(name))
    backbone = model.backbone
    unseen = BACKBONES[name][2]
    x = images(unseen)
    with torch.no_grad(), backbone.calibrating(unseen):
        backbone(images(unseen, n=4, seed=2))
    assert backbone.calibrated_sizes == [unseen]
    kinds = dict(proxy='set', ideal='set', data_free='interpolate',
                 calibrated='calibrated')
    got = {}
    for mode, kind in kinds.items():
        got[mode] = logits(model, x, mode)
        assert backbone.resolve_scale(unseen).bn.kind == kind
    modes = list(got)
    for i, first in enumerate(modes):
        for second in modes[i + 1:]:
            difference = (got[first] - got[second]).abs().max()
            # float32 rounding moves these logits by ~1e-7 of their scale;
            # another encoding or BN moves them by percents.
            assert difference > 1e-3 * got[first].abs().max(), (first, second)


def exported(model, size, mode=None):
    """The plain mmpretrain classifier ``model`` exports to at ``size``."""
    head = dict(type='LinearClsHead', num_classes=3,
                in_channels=model.head.fc.in_features)
    cfg = Config(dict(model=dict(type='SANClassifier', backbone={},
                                 neck=dict(type='GlobalAveragePooling'),
                                 head=head),
                      data_preprocessor=dict(mean=[0, 0, 0], std=[255] * 3),
                      test_dataloader=dict(dataset=dict(pipeline=[]))))
    state_dict, _ = export_state_dict(model, size, mode)
    plain_cfg = export_config(cfg, model, size)
    plain = build_plain_model(plain_cfg)
    plain.load_state_dict(state_dict, strict=True)
    return plain.eval(), plain_cfg


@pytest.mark.parametrize('name', NAMES)
def test_export_equals_the_san_forward(name):
    model = trained_like(classifier(name))
    plain_type = BACKBONES[name][0]['type']
    sizes, unseen = BACKBONES[name][1], BACKBONES[name][2]
    for size, mode in ((sizes[-1], None), (unseen, 'data_free')):
        plain, plain_cfg = exported(model, size, mode)
        assert type(plain.backbone).__name__ == plain_type
        assert 'custom_imports' not in plain_cfg  # mmpretrain's own
        x = images(size)
        # The exported model runs the same kernels (B + s * A computed once,
        # bit for bit) and BN tensors through the same ops: exact.
        torch.testing.assert_close(logits(plain, x),
                                   logits(model, x, mode or 'proxy'),
                                   rtol=0, atol=0)


@pytest.mark.parametrize('name', NAMES)
def test_pretrained_from_plain_equals_the_plain_model(name, tmp_path):
    sizes = BACKBONES[name][1]
    plain = plain_classifier(name)
    trained_like(plain, sizes)  # so that copying BN to every set is seen
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    san = classifier(name, seed=1, init_cfg=dict(
        type='PretrainedFromPlain', checkpoint=path, prefix='backbone.'))
    san.init_weights()
    san.head.load_state_dict(plain.head.state_dict())
    plain.eval(), san.eval()
    for size in sizes:
        x = images(size)
        # B = the plain kernel, A = 0 (B + s * 0 is B bit for bit), every BN
        # set = the plain BN: the same ops on the same tensors, exact.
        torch.testing.assert_close(logits(san, x), logits(plain, x), rtol=0,
                                   atol=0)


@pytest.mark.parametrize('name', NAMES)
def test_compiles_without_graph_breaks(name):
    model = trained_like(classifier(name))
    unseen = BACKBONES[name][2]
    model.backbone.inference_mode = 'data_free'
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            explained = torch._dynamo.explain(model.backbone)(images(unseen))
    finally:
        torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize('name', NAMES)
def test_names_are_the_plain_backbones_plus_sets_and_residuals(name):
    plain_cfg, sizes = BACKBONES[name][:2]
    plain = MODELS.build(copy.deepcopy(plain_cfg))
    net = ScaleAdaptive(copy.deepcopy(plain_cfg), train_sizes=sizes)
    assert isinstance(net, BaseScaleAdaptiveBackbone)
    assert isinstance(net, type(plain))
    assert type(net).__name__ == f'ScaleAdaptive{type(plain).__name__}'
    plain_names = {n for n, _ in plain.named_modules()}
    san_names = {n for n, _ in net.named_modules()}
    assert {n for n in san_names
            if not re.search(r'\.(sets|calibrated)(\.\d+)?$', n)
            } == plain_names
    # Every BN private (K sets), every conv but the first generated.
    convs = [n for n, m in plain.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [n for n, m in plain.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modules = dict(net.named_modules())
    assert all(isinstance(modules[n], PrivateBatchNorm2d)
               and modules[n].num_sets == len(sizes) for n in bns)
    assert not isinstance(modules[convs[0]], MetaConv2d)
    assert all(isinstance(modules[n], MetaConv2d) for n in convs[1:])
    plain_keys = set(plain.state_dict())
    san_keys = set(net.state_dict())
    residuals = {k for k in san_keys if k.endswith('weight_residual')}
    assert residuals == {f'{n}.weight_residual' for n in convs[1:]}
    assert {plain_source_key(k) for k in san_keys - residuals} == plain_keys
    for name_ in bns:
        assert {f'{name_}.sets.{i}.running_mean'
                for i in range(len(sizes))} <= san_keys


def resnet_v1d(with_cp, **model_kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='ScaleAdaptive', backbone=dict(
            BACKBONES['ResNetV1d'][0], with_cp=with_cp), train_sizes=[32, 24]),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32),
        **model_kwargs))


def test_gradient_checkpointing_needs_and_works_with_backward_per_size():
    """with_cp recomputes a block in the backward, which needs its size's
    state: one backward per size (inside the size's ``at_size``, as
    ``backward_per_size=True`` runs it) gives the gradients of the network
    without checkpointing; the joint backward is refused when the model is
    built."""
    with pytest.raises(ValueError, match=r'with_cp=True.*set '
                       r'model.backward_per_size=True'):
        resnet_v1d(with_cp=True)
    grads = []
    for with_cp in (False, True):
        model = resnet_v1d(with_cp, backward_per_size=True)
        torch.manual_seed(1)
        trained_like(model).train()
        assert model.backbone.with_checkpointing == with_cp
        # What SANClassifier.update_per_size runs inside the optimiser's
        # context: each size's backward right after its forward.
        for _, terms in model.losses_per_size([images(32), images(24)],
                                              labels()):
            sum(terms.values()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(grad is not None for grad in grads[0].values())
    for key, expected in grads[0].items():
        # The same ops on the same tensors (the blocks' forwards run again in
        # the backward), accumulated in the same order: exact (measured 0).
        torch.testing.assert_close(grads[1][key], expected, rtol=0, atol=0)


def test_repvgg_exported_then_reparameterised_equals_san():
    """The nearest supported choice for a deploy-mode RepVGG: SAN on its
    training form; the plain RepVGG exported at one size re-parameterises
    (``switch_to_deploy``) as any RepVGG."""
    model = trained_like(classifier('RepVGG'))
    plain, _ = exported(model, 28, 'data_free')
    plain.backbone.switch_to_deploy()
    assert plain.backbone.deploy
    x = images(28)
    expected = logits(model, x, 'data_free')
    # Folding the branches into one kernel sums in another order: measured
    # max |diff| 0.8e-6 to 1.4e-6 at logits of scale 0.4 to 2.6 (three
    # seeds); a wrong set or encoding moves them by ~1e-1.
    scale = max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(logits(plain, x), expected, rtol=0,
                               atol=1e-5 * scale)


@pytest.mark.parametrize('plain,match', [
    (dict(type='ConvNeXt', arch=dict(depths=[1, 1, 1, 1],
                                     channels=[8, 16, 32, 64])),
     r'normalises with LayerNorm2d.*no running statistics.*RegNet or '
     r'ResNeXt in place of ConvNeXt'),
    (dict(type='RepVGG', deploy=True, arch=dict(
        num_blocks=[1, 1, 1, 1], width_factor=[0.25] * 4,
        group_layer_map=None, se_cfg=None)),
     r'deploy=True.*folded its BN.*build it with deploy=False'),
], ids=['ConvNeXt', 'RepVGG-deploy'])
def test_backbones_without_batch_norm_are_refused(plain, match):
    with pytest.raises(ValueError, match=match):
        ScaleAdaptive(plain, train_sizes=[32, 24])
