"""Convert checkpoints of the reference SAN implementation (d-li14/SAN) to san_mm.

Reference layout (``torch.save({'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'})``, keys
prefixed ``module.``): each generated conv is a meta layer ``Linear(1, N)`` whose ``weight [N, 1]`` is
the residual A and ``bias [N]`` the base B of the flattened kernel; private BNs are ``bn_k`` sets; the
ResNet builds unused ``downsample`` modules (dropped). See ``shared/reference/san-method.md`` §4.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
from torch import Tensor

RESNET_DEPTHS = (18, 34, 50, 101, 152)
ARCHS = tuple(f'resnet{d}' for d in RESNET_DEPTHS) + ('mobilenetv2', )
BN_SUFFIXES = ('weight', 'bias', 'running_mean', 'running_var',
               'num_batches_tracked')


def _strip_module(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k,
                        v) for k, v in state_dict.items())


def count_bn_sets(state_dict: Dict[str, Tensor]) -> int:
    """Number of private BN sets (training sizes) in a reference checkpoint."""
    indices = {int(m.group(1)) for k in state_dict
               for m in [re.search(r'\.bn_(\d+)\.', k)] if m}
    if not indices:
        raise ValueError(
            'no private BN sets (`.bn_<k>.` keys) found: this is not a '
            'checkpoint of the reference SAN implementation. A san_mm '
            'checkpoint loads as it is (load_from); a plain mmpretrain one '
            "starts SAN through init_cfg=dict(type='PretrainedFromPlain', "
            'checkpoint=...)')
    return max(indices) + 1


class _Mapper:
    """Collects source -> target key mappings and reports what is left."""

    def __init__(self, source: Dict[str, Tensor]):
        self.source = source
        self.used = set()
        self.out = OrderedDict()

    def take(self, key: str) -> Tensor:
        if key not in self.source:
            raise KeyError(f'reference checkpoint has no key {key!r}: is '
                           '--arch the architecture it was trained with?')
        self.used.add(key)
        return self.source[key]

    def meta_conv(self, src: str, dst: str) -> None:
        # weight [N, 1] = A (residual), bias [N] = B (base); reshaped later
        self.out[f'{dst}.weight_residual'] = self.take(f'{src}.weight')[:, 0]
        self.out[f'{dst}.weight'] = self.take(f'{src}.bias')

    def private_bn(self, src: str, dst: str, num_sets: int) -> None:
        for k in range(num_sets):
            for suffix in BN_SUFFIXES:
                key = f'{src}.bn_{k}.{suffix}'
                if key in self.source or suffix != 'num_batches_tracked':
                    self.out[f'{dst}.sets.{k}.{suffix}'] = self.take(key)

    def copy(self, src: str, dst: str) -> None:
        self.out[dst] = self.take(src)

    def leftovers(self, ignore: Tuple[str, ...] = ()) -> List[str]:
        return [k for k in self.source
                if k not in self.used and not k.startswith(ignore)]


def _resnet_blocks(depth: int):
    from mmpretrain.models.backbones import ResNet
    block, stages = ResNet.arch_settings[depth]
    bottleneck = block.__name__ == 'Bottleneck'
    for stage, count in enumerate(stages, start=1):
        for index in range(count):
            yield stage, index, bottleneck


def convert_resnet(source: Dict[str, Tensor], depth: int,
                   num_sets: int) -> Tuple[Dict[str, Tensor], List[str]]:
    m = _Mapper(source)
    m.copy('conv1.module.weight', 'backbone.conv1.weight')
    m.private_bn('bn1', 'backbone.bn1', num_sets)
    for stage, index, bottleneck in _resnet_blocks(depth):
        src, dst = f'layer{stage}.{index}', f'backbone.layer{stage}.{index}'
        convs = 3 if bottleneck else 2
        for i in range(1, convs + 1):
            m.meta_conv(f'{src}.fc{i}', f'{dst}.conv{i}')
            m.private_bn(f'{src}.bn{i}', f'{dst}.bn{i}', num_sets)
        shortcut = convs + 1  # fc3 (BasicBlock) / fc4 (Bottleneck)
        if f'{src}.fc{shortcut}.weight' in source:
            m.meta_conv(f'{src}.fc{shortcut}', f'{dst}.downsample.0')
            m.private_bn(f'{src}.bn{shortcut}', f'{dst}.downsample.1',
                         num_sets)
    m.copy('fc.module.weight', 'head.fc.weight')
    m.copy('fc.module.bias', 'head.fc.bias')
    # the reference builds `downsample` modules it never calls: dead weight
    dead = tuple(f'layer{s}.0.downsample.' for s in range(1, 5))
    return m.out, m.leftovers(ignore=dead)


def _mobilenet_blocks():
    from mmpretrain.models.backbones import MobileNetV2
    feature = 1
    for layer, (expand, _, count, _) in enumerate(
            MobileNetV2.arch_settings, start=1):
        for index in range(count):
            yield feature, f'layer{layer}.{index}', 2 if expand == 1 else 3
            feature += 1


def convert_mobilenet_v2(source: Dict[str, Tensor],
                         num_sets: int) -> Tuple[Dict[str, Tensor], List[str]]:
    m = _Mapper(source)
    m.meta_conv('features.0.fc', 'backbone.conv1.conv')
    m.private_bn('features.0.bn', 'backbone.conv1.bn', num_sets)
    for feature, block, convs in _mobilenet_blocks():
        for i in range(convs):
            m.meta_conv(f'features.{feature}.fc{i + 1}',
                        f'backbone.{block}.conv.{i}.conv')
            m.private_bn(f'features.{feature}.bn{i + 1}',
                         f'backbone.{block}.conv.{i}.bn', num_sets)
    m.meta_conv('conv.fc', 'backbone.conv2.conv')
    m.private_bn('conv.bn', 'backbone.conv2.bn', num_sets)
    m.copy('classifier.module.weight', 'head.fc.weight')
    m.copy('classifier.module.bias', 'head.fc.bias')
    return m.out, m.leftovers()


def convert_official_state_dict(state_dict: Dict[str, Tensor],
                                arch: str) -> Tuple[Dict[str, Tensor], int]:
    """Rename a reference state dict to san_mm's ``SANClassifier`` keys.

    Kernels stay flat here (``[N]``); :func:`load_official` reshapes them to
    the target model's kernel shapes.

    Returns:
        tuple: (state dict, number of private BN sets).

    Raises:
        ValueError: For an unknown ``arch``, or source keys that do not map.
    """
    if arch not in ARCHS:
        raise ValueError(f'unknown arch {arch!r}; expected one of '
                         f'{list(ARCHS)} (the --arch of '
                         'tools/convert_official.py)')
    source = _strip_module(state_dict)
    num_sets = count_bn_sets(source)
    if arch == 'mobilenetv2':
        converted, leftovers = convert_mobilenet_v2(source, num_sets)
    else:
        converted, leftovers = convert_resnet(source, int(arch[6:]), num_sets)
    if leftovers:
        raise ValueError(f'{len(leftovers)} keys of the reference checkpoint '
                         f'do not map to {arch}: {leftovers[:8]}; pass the '
                         '--arch it was trained with')
    return converted, num_sets


def load_official(model: torch.nn.Module, state_dict: Dict[str, Tensor],
                  arch: str) -> None:
    """Load a reference state dict into a ``SANClassifier`` (strict)."""
    converted, num_sets = convert_official_state_dict(state_dict, arch)
    if num_sets != len(model.backbone.train_sizes):
        raise ValueError(
            f'the checkpoint has {num_sets} private BN sets, the model '
            f'{len(model.backbone.train_sizes)} training sizes '
            f'{list(model.backbone.train_sizes)}: set train_sizes in the '
            f'--config to the {num_sets} sizes the checkpoint was trained '
            'with (in the same order, largest first)')
    target = model.state_dict()
    shaped = OrderedDict()
    for key, value in converted.items():
        if key not in target:
            raise KeyError(f'converted key {key} is not in the model: pass '
                           'a --config that builds the --arch network')
        if value.numel() != target[key].numel():
            raise ValueError(f'{key}: the checkpoint has {value.numel()} '
                             f'values, the model {tuple(target[key].shape)}; '
                             'pass a --config with the width and number of '
                             'classes of the checkpoint')
        shaped[key] = value.reshape(target[key].shape)
    model.load_state_dict(shaped, strict=True)
