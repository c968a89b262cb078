import pytest
import torch
import torch.nn as nn
from mmpretrain.models import ImageClassifier, MobileNetV2, ResNet
from mmpretrain.registry import MODELS

from san_mm.models import MetaConv2d, MetaMobileNetV2, MetaResNet
from san_mm.models.utils import PrivateBatchNorm2d

SIZES = (224, 192, 160, 128, 96)
TINY_RESNET = dict(stem_channels=4, base_channels=4)


def tiny(depth, **kwargs):
    return MetaResNet(depth, **TINY_RESNET, **kwargs)


@pytest.mark.parametrize('depth', [18, 50])
def test_resnet_output_shapes_match_mmpretrain_resnet(depth):
    net = tiny(depth, out_indices=(0, 1, 2, 3)).eval()
    plain = ResNet(depth, **TINY_RESNET, out_indices=(0, 1, 2, 3))
    plain.eval()  # mmpretrain's train() returns None
    expansion = 1 if depth == 18 else 4
    for size in SIZES:
        x = torch.rand(2, 3, size, size)
        outs = net(x)
        assert [o.shape for o in outs] == [o.shape for o in plain(x)]
        side = -(-size // 32)
        assert outs[-1].shape == (2, 32 * expansion, side, side)


def test_mobilenet_v2_output_shapes_match_mmpretrain():
    net = MetaMobileNetV2(widen_factor=0.25, out_indices=range(8)).eval()
    plain = MobileNetV2(widen_factor=0.25, out_indices=range(8))
    plain.eval()
    for size in SIZES:
        x = torch.rand(1, 3, size, size)
        outs = net(x)
        assert [o.shape for o in outs] == [o.shape for o in plain(x)]
        assert outs[-1].shape == (1, 1280, -(-size // 32), -(-size // 32))


@pytest.mark.parametrize('build,expected_meta', [
    (lambda: MetaResNet(18), 22_315_008),
    (lambda: MetaResNet(50), 46_891_008),
    (lambda: MetaMobileNetV2(), 4_379_520),
])
def test_full_width_meta_parameter_counts(build, expected_meta):
    net = build()
    meta = sum(p.numel() for conv in net.meta_convs()
               for p in conv.parameters(recurse=False))
    assert meta == expected_meta


def test_what_is_generated_and_what_is_shared():
    net = tiny(50)
    assert type(net.conv1) is nn.Conv2d  # shared 7x7 stem
    assert isinstance(net.bn1, PrivateBatchNorm2d)  # private stem BN
    assert isinstance(net.layer1[0].downsample[0], MetaConv2d)
    assert isinstance(net.layer1[0].downsample[1], PrivateBatchNorm2d)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert sum(not isinstance(m, MetaConv2d) for m in convs) == 1
    assert not any(isinstance(m, nn.BatchNorm2d) and not any(
        m is s for p in net.private_bns() for s in p.sets)
        for m in net.modules())
    mbv2 = MetaMobileNetV2(widen_factor=0.25)
    assert all(isinstance(m, MetaConv2d) for m in mbv2.modules()
               if isinstance(m, nn.Conv2d))
    # mmpretrain's module names, so conversion is a selection
    names = dict(net.named_parameters())
    assert {'conv1.weight', 'bn1.sets.0.weight', 'layer1.0.conv2.weight',
            'layer1.0.conv2.weight_residual', 'layer1.0.downsample.0.weight',
            'layer4.2.bn3.sets.4.bias'} <= set(names)


@pytest.mark.parametrize('build', [lambda: tiny(18), lambda: tiny(50),
                                   lambda: MetaMobileNetV2(widen_factor=0.25)])
def test_no_dead_parameters(build):
    net = build().train()
    loss = sum(net(torch.rand(2, 3, s, s))[-1].mean() for s in SIZES)
    loss.backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == []


def test_forward_at_training_size_uses_its_private_bn():
    net = tiny(18).train()
    net(torch.rand(2, 3, 160, 160))
    tracked = [int(s.num_batches_tracked) for s in net.bn1.sets]
    assert tracked == [0, 0, 1, 0, 0]
    state = net.resolve_scale(160)
    # float64 encoding (~1e-16) vs approx's rel 1e-6; neighbours 0.1 apart
    assert state.size == 160 and state.encoding == pytest.approx(0.5)


def test_at_size_overrides_input_size_and_mode():
    net = tiny(18).eval()
    seen = []
    net.bn1.register_forward_pre_hook(
        lambda *_: seen.append(net.scale_context.state))
    with net.at_size(176, 'data_free'):
        net(torch.rand(1, 3, 64, 80))
        assert net.scale_context.state == seen[-1]  # active between forwards
    assert seen[-1].size == 176 and seen[-1].bn.kind == 'interpolate'
    assert net.inference_mode == 'proxy' and net.scale_context.state is None
    net(torch.rand(1, 3, 64, 80))  # shorter side 64 -> nearest 96 (proxy)
    assert seen[-1].size == 64 and seen[-1].bn.index == 4
    with pytest.raises(ValueError, match='training forward at resolution 100'):
        net.train()(torch.rand(2, 3, 100, 100))


def test_train_sizes_any_number_kept_largest_first():
    net = tiny(18, train_sizes=[18, 28, 20])
    assert net.train_sizes == (28, 20, 18)
    assert net.bn1.num_sets == 3
    assert net.scale_encoder.encode(20) == pytest.approx(0.5)  # as above
    with pytest.raises(ValueError, match=r'\[28\] more than once'):
        tiny(18, train_sizes=[28, 28])


def test_no_meta_network_switch():
    net = tiny(18, use_meta_network=False)
    assert all(conv.weight_residual is None for conv in net.meta_convs())
    assert all(bn.num_sets == 5 for bn in net.private_bns())
    x = torch.rand(1, 3, 96, 96)
    net.eval()
    assert net(x)[0].shape == (1, 32, 3, 3)


@pytest.mark.parametrize('kwargs,match', [
    (dict(depth=19), '19'),
    (dict(depth=18, out_indices=(4, )), '4'),
    (dict(depth=18, frozen_stages=5), '5'),
    (dict(depth=18, num_stages=5), '5'),
    (dict(depth=18, strides=(1, 2)), r'\(1, 2\)'),
    (dict(depth=18, base_channels=0), 'base_channels'),
    (dict(depth=18, inference_mode='exact'), "'exact'"),
    (dict(depth=18, train_sizes=[224, 0]), '0'),
    (dict(depth=18, meta_init='xavier'), "'xavier'"),
])
def test_resnet_invalid_arguments(kwargs, match):
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        MetaResNet(**kwargs)


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(8, )), '8'),
    (dict(frozen_stages=8), '8'),
    (dict(widen_factor=0), '0'),
])
def test_mobilenet_v2_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaMobileNetV2(**kwargs)


def test_frozen_stages_and_norm_eval():
    net = tiny(18, frozen_stages=1, norm_eval=True)
    net.train()
    assert not net.conv1.weight.requires_grad
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not any(m.training for m in net.modules()
                   if isinstance(m, nn.BatchNorm2d))
    mbv2 = MetaMobileNetV2(widen_factor=0.25, frozen_stages=2).train()
    assert not any(p.requires_grad for p in mbv2.layer2.parameters())
    assert not mbv2.layer2.training and mbv2.layer3.training


def test_zero_init_residual():
    net = tiny(18, zero_init_residual=True)
    net.init_weights()  # mmpretrain's ResNet.init_weights, every set
    assert all(torch.count_nonzero(s.weight) == 0 for s in net.layer1[0].bn2.sets)


def test_registered_and_drop_into_image_classifier():
    model = MODELS.build(
        dict(type='ImageClassifier',
             backbone=dict(type='MetaResNet', depth=18, **TINY_RESNET),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=7, in_channels=32)))
    assert isinstance(model, ImageClassifier)
    model.init_weights()
    model.eval()
    for size in (160, 100):
        assert model(torch.rand(2, 3, size, size), mode='tensor').shape == (2, 7)
    mbv2 = MODELS.build(
        dict(type='ImageClassifier',
             backbone=dict(type='MetaMobileNetV2', widen_factor=0.25),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=3, in_channels=1280)))
    mbv2.eval()
    assert mbv2(torch.rand(1, 3, 96, 96), mode='tensor').shape == (1, 3)


def test_cuda_if_available():
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    net = tiny(18).cuda().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 96, 96, device='cuda'))
    assert out[0].is_cuda


def test_checkpoint_of_other_sizes_or_meta_setting_is_refused(tmp_path):
    from mmengine.runner import load_checkpoint
    three = tiny(18, train_sizes=[64, 48, 32])
    path = tmp_path / 'three.pth'
    torch.save({'state_dict': three.state_dict()}, path)
    with pytest.raises(ValueError, match=r'3 private BN sets.*5 training'):
        load_checkpoint(tiny(18), str(path))  # non-strict, as load_from
    with pytest.raises(ValueError, match='without the meta network'):
        tiny(18, train_sizes=[64, 48, 32]).load_state_dict(
            tiny(18, train_sizes=[64, 48, 32],
                 use_meta_network=False).state_dict())
    same = tiny(18, train_sizes=[32, 48, 64])
    load_checkpoint(same, str(path))
    assert torch.equal(same.layer1[0].conv1.weight_residual,
                       three.layer1[0].conv1.weight_residual)


def plain_classifier_checkpoint(tmp_path, backbone, channels):
    """A tiny mmpretrain ImageClassifier checkpoint, as the model zoo's."""
    plain = MODELS.build(dict(
        type='ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=channels)))
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    return str(path)


@pytest.mark.parametrize('prefix', ['backbone.', None])
@pytest.mark.parametrize('use_meta_network', [True, False])
def test_plain_checkpoint_through_pretrained_points_to_plain_init(
        tmp_path, prefix, use_meta_network):
    # mmpretrain habit: init_cfg=dict(type='Pretrained', ...) on the backbone
    path = plain_classifier_checkpoint(
        tmp_path, dict(type='ResNet', depth=18, **TINY_RESNET), 32)
    net = tiny(18, use_meta_network=use_meta_network, init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix=prefix))
    with pytest.raises(ValueError, match=(
            r'plain mmpretrain ResNet checkpoint \(no generated-conv '
            r'residuals .*one BN per layer.*\), which ScaleAdaptiveResNet '
            r'cannot load '
            r'as it is; start SAN from it with the '
            r"backbone's init_cfg=dict\(type='PretrainedFromPlain', "
            r"checkpoint=\.\.\., prefix='backbone\.'\) \(see "
            r'configs/finetune/\)')):
        net.init_weights()
    # ... and the advice works
    tiny(18, use_meta_network=use_meta_network, init_cfg=dict(
        type='PretrainedFromPlain', checkpoint=path,
        prefix='backbone.')).init_weights()


def test_plain_checkpoint_into_whole_model_points_to_model_init_cfg(
        tmp_path):
    path = plain_classifier_checkpoint(
        tmp_path, dict(type='MobileNetV2', widen_factor=0.25), 1280)
    model = dict(
        type='SANClassifier',
        backbone=dict(type='MetaMobileNetV2', widen_factor=0.25),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=1280))
    san = MODELS.build(dict(model, init_cfg=dict(type='Pretrained',
                                                 checkpoint=path)))
    with pytest.raises(ValueError, match=(
            r"plain mmpretrain MobileNetV2 checkpoint.*model=dict\(init_cfg="
            r"dict\(type='PretrainedFromPlain', checkpoint=\.\.\.\)\) instead "
            r'of load_from / Pretrained \(as configs/finetune/ does\)')):
        san.init_weights()
    MODELS.build(dict(model, init_cfg=dict(
        type='PretrainedFromPlain', checkpoint=path))).init_weights()


def test_no_meta_ablation_checkpoint_says_which_switch_to_set():
    ablation = tiny(18, train_sizes=[64, 32], use_meta_network=False)
    with pytest.raises(ValueError, match=(
            r'trained without the meta network \(private BN sets but no '
            r'generated-conv `weight_residual` tensors.*\), but this '
            r'ScaleAdaptiveResNet has use_meta_network=True: set '
            r'use_meta_network=False in the backbone config')):
        tiny(18, train_sizes=[64, 32]).load_state_dict(ablation.state_dict())
    with pytest.raises(ValueError, match=(
            r'trained with the meta network.*use_meta_network=False: set '
            r'use_meta_network=True')):
        ablation.load_state_dict(tiny(18, train_sizes=[64, 32]).state_dict())


def test_bn_set_count_mismatch_names_both_and_the_fix():
    three = tiny(18, train_sizes=[64, 48, 32]).state_dict()
    with pytest.raises(ValueError, match=(
            r'checkpoint has 3 private BN sets .*has 2 training sizes, '
            r'train_sizes=\[96, 80\]: set train_sizes to the 3 sizes')):
        tiny(18, train_sizes=[80, 96]).load_state_dict(three)
    # A one-size model without meta network is a plain start point.
    one = tiny(18, train_sizes=[64], use_meta_network=False).state_dict()
    with pytest.raises(ValueError, match=(
            r'has 1 private BN set .*5 training sizes.*the 1 size the '
            r'checkpoint.*one-size model without meta network.*'
            r"PretrainedFromPlain")):
        tiny(18).load_state_dict(one)


def test_too_small_sizes_say_what_to_change():
    with pytest.raises(ValueError, match=(
            r'training size 16 is too small .*at least 17 .*; remove it from '
            r'train_sizes=\[32, 16\]$')):
        tiny(18, train_sizes=[32, 16])
    with pytest.raises(ValueError, match=(
            r'size 12 is too small.*; resize the images to at least 17 '
            'pixels$')):
        tiny(18).eval()(torch.rand(1, 3, 12, 12))
    with pytest.raises(ValueError, match=r'got shape \(3, 32, 32\); add the '
                       r'batch dimension'):
        tiny(18).eval()(torch.rand(3, 32, 32))


def test_classifier_checkpoint_into_backbone_asks_for_prefix(tmp_path):
    san = MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', depth=18, **TINY_RESNET),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))
    path = tmp_path / 'san.pth'
    torch.save({'state_dict': san.state_dict()}, path)
    net = tiny(18, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=(
            r"whole classifier \(keys such as 'backbone\..*add "
            r"prefix='backbone\.' to the backbone's init_cfg")):
        net.init_weights()
    tiny(18, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                           prefix='backbone.')).init_weights()


@pytest.mark.parametrize('build, stride', [
    (lambda **kw: tiny(18, **kw), 32),
    (lambda **kw: tiny(50, **kw), 32),
    (lambda **kw: MetaMobileNetV2(widen_factor=0.25, **kw), 32),
    (lambda **kw: tiny(18, stem_kernel_size=3, stem_pool=False, **kw), 16),
    (lambda **kw: tiny(18, out_indices=(1, ), **kw), 8),
    (lambda **kw: MetaMobileNetV2(widen_factor=0.25, out_indices=(2, ), **kw),
     8),
])
def test_sizes_too_small_for_the_total_stride_are_refused(build, stride):
    smallest = stride // 2 + 1
    net = build(train_sizes=[smallest + 8, smallest]).eval()
    assert (net.total_stride, net.min_input_size) == (stride, smallest)
    # The last stride-2 layer gets at least a 2x2 map at the smallest size.
    net(torch.rand(1, 3, smallest, smallest))
    with pytest.raises(ValueError, match=rf'training size {smallest - 1} is '
                       rf'too small .* total stride is {stride}, so every '
                       rf'size must be at least {smallest}'):
        build(train_sizes=[smallest + 8, smallest - 1])
    with pytest.raises(ValueError, match=rf'input of shape \(1, 3, '
                       rf'{smallest - 1}, 40\): size {smallest - 1} is too '
                       'small'):
        net(torch.rand(1, 3, smallest - 1, 40))


@pytest.mark.parametrize('copy_of', ['deepcopy', 'pickle'])
def test_one_scale_context_shared_by_every_layer_and_no_submodule(copy_of):
    """The network's ScaleContext is no module: it adds nothing to the state
    dict or named_modules, and a copy of the network (deepcopy, e.g. an EMA
    model, or pickle) gets one new context shared by all of its layers."""
    import copy
    import pickle
    net = tiny(18, train_sizes=[32, 24])
    assert not [k for k in net.state_dict() if 'scale_' in k]
    assert not [n for n, _ in net.named_modules() if 'scale_' in n]
    clone = (copy.deepcopy(net) if copy_of == 'deepcopy' else
             pickle.loads(pickle.dumps(net)))
    assert type(clone) is type(net)
    context = clone.scale_context
    assert context is not net.scale_context
    layers = list(clone.private_bns()) + list(clone.meta_convs())
    assert layers and all(layer.scale_context is context for layer in layers)
    assert all(a is b for a, b in zip(
        clone.private_bns(), [m for m in clone.modules()
                              if isinstance(m, type(clone.bn1))]))
    clone.eval()
    seen = []
    clone.bn1.register_forward_pre_hook(lambda *_: seen.append(context.state))
    with torch.no_grad():
        clone(torch.rand(1, 3, 24, 24))
    assert seen[0].size == 24 and context.state is None


@pytest.mark.parametrize('build', [
    lambda: tiny(18, stem_kernel_size=3, stem_pool=False,
                 train_sizes=[32, 24], meta_init='kaiming'),
    lambda: MetaMobileNetV2(widen_factor=0.25, train_sizes=[32, 24],
                            meta_init='kaiming')],
    ids=['MetaResNet', 'MetaMobileNetV2'])
def test_gradient_checkpointing_recomputes_inside_at_size(build):
    """with_cp: blocks recompute their activations in backward, which must
    see the state of their forward: a backward inside ``at_size`` (what
    ``SANClassifier(backward_per_size=True)`` runs) gives the gradients of
    the network without checkpointing; outside any forward, the layers
    refuse to guess a size."""
    import copy
    torch.manual_seed(0)
    net = build().train()
    with torch.no_grad():  # as after training: A and the sets differ
        for param in net.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    checkpointed = copy.deepcopy(net)
    blocks = [m for m in checkpointed.modules() if hasattr(m, 'with_cp')]
    assert blocks
    for block in blocks:
        block.with_cp = True
    inputs = [torch.rand(2, 3, size, size) for size in (32, 24)]
    grads = []
    for model in (net, checkpointed):
        for x in inputs:
            with model.at_size(x.shape[-1]):
                model(x)[-1].square().mean().backward()
        assert model.scale_context.state is None
        grads.append([p.grad for p in model.parameters()
                      if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for expected, got in zip(*grads):
        torch.testing.assert_close(got, expected)
    with pytest.raises(RuntimeError, match='no active resolution'):
        checkpointed(inputs[0])[-1].sum().backward()
