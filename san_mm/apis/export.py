"""Export a SAN model at one size to the plain mmpretrain backbone it was made from (then ONNX).

Once the kernels and BN for a size are chosen, a SAN network *is* a plain network. A
scale-adaptive backbone keeps its plain backbone's module names, so export is a state-dict
translation: every generated conv's ``weight`` becomes the kernel for the size's encoding (its
``weight_residual`` is folded in), every private BN keeps the statistics the scale policy selects
for the size (one set, an interpolation of two, or calibrated statistics), everything else is
copied. The result loads into the plain backbone's class with ``strict=True``: mmpretrain alone
for mmpretrain's backbones, with ``custom_imports`` for a backbone another package registers.
"""
import copy
import inspect
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from san_mm.models.backbones import BaseScaleAdaptiveBackbone
from san_mm.models.classifiers import SANClassifier
from san_mm.models.utils import MetaConv2d, PrivateBatchNorm2d, ScaleState

BN_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')
#: SANClassifier's arguments that mmpretrain's ImageClassifier does not take.
SAN_CLASSIFIER_ONLY = tuple(
    set(inspect.signature(SANClassifier).parameters) -
    set(inspect.signature(ImageClassifier).parameters))


def plain_backbone_cfg(backbone: BaseScaleAdaptiveBackbone) -> dict:
    """The config of the plain backbone ``backbone`` was made from.

    Raises:
        ValueError: For a backbone converted from a module rather than a
            config (nothing to rebuild it from).
    """
    if backbone.plain_cfg is None:
        raise ValueError(
            f'this {type(backbone).__name__} was made from a built module, '
            'not a config, so there is no plain config to export to: build '
            "it with ScaleAdaptive(backbone=dict(type=...), ...)")
    cfg = copy.deepcopy(backbone.plain_cfg)
    cfg.pop('init_cfg', None)  # the exported checkpoint holds the weights
    return cfg


def _bn_tensors(bn: PrivateBatchNorm2d, state: ScaleState) -> Dict:
    selection = state.bn
    if selection.kind == 'set':
        chosen = bn.sets[selection.index]
        tensors = {name: getattr(chosen, name) for name in BN_TENSORS}
        tensors['num_batches_tracked'] = chosen.num_batches_tracked
    elif selection.kind == 'interpolate':
        tensors = bn.interpolated_parameters(selection.index,
                                             selection.upper_index,
                                             selection.alpha)
        tensors.pop('eps')
        tensors['num_batches_tracked'] = bn.sets[
            selection.index].num_batches_tracked
    elif selection.kind == 'calibrated':
        affine = bn.sets[selection.index]
        stats = bn.calibrated[str(selection.size)]
        tensors = dict(weight=affine.weight, bias=affine.bias,
                       running_mean=stats.running_mean,
                       running_var=stats.running_var,
                       num_batches_tracked=stats.num_batches_tracked)
    else:
        raise ValueError(f'cannot export BN selection {selection.kind!r}')
    return tensors


@torch.no_grad()
def export_state_dict(model: nn.Module, size: int,
                      inference_mode: Optional[str] = None
                      ) -> Tuple['OrderedDict[str, torch.Tensor]', ScaleState]:
    """The plain-model state dict of ``model`` (a classifier with a SAN
    backbone) at ``size``.

    Args:
        model (nn.Module): e.g. a ``SANClassifier``.
        size (int): Resolution to bake in.
        inference_mode (str, optional): Mode for an unseen ``size``;
            defaults to the backbone's.

    Returns:
        tuple: (state dict, the :class:`ScaleState` that was baked in).
    """
    backbone = model.backbone
    if not isinstance(backbone, BaseScaleAdaptiveBackbone):
        raise TypeError('export needs a scale-adaptive backbone, got '
                        f'{type(backbone).__name__}: a plain model is already '
                        'exported, use its config and checkpoint as they are')
    backbone.check_size_fits(size, 'export size', 'export a larger --size')
    was_training = model.training
    model.eval()
    try:
        with backbone.at_size(size, inference_mode):
            state = backbone.resolve_scale(size)
    finally:
        model.train(was_training)

    out = OrderedDict()
    handled = set()
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if isinstance(module, MetaConv2d):
            out[prefix + 'weight'] = module.generate_kernel(
                state.encoding).detach().clone()
            if module.bias is not None:  # shared by every size
                out[prefix + 'bias'] = module.bias.detach().clone()
            handled.update(prefix + key for key in module.state_dict())
        elif isinstance(module, PrivateBatchNorm2d):
            for key, value in _bn_tensors(module, state).items():
                if value is not None:
                    out[prefix + key] = value.detach().clone()
            handled.update(prefix + key for key in module.state_dict())
    for key, value in model.state_dict().items():
        if key not in handled and not key.startswith('data_preprocessor.'):
            out[key] = value.detach().clone()
    return out, state


def export_config(cfg: Config, model: nn.Module, size: int) -> Config:
    """The exported model's config at ``size``: the plain backbone, the
    classifier as ``ImageClassifier``, the preprocessor and a single-size
    test pipeline (mmpretrain's own modules, and ``custom_imports`` for a
    backbone registered elsewhere)."""
    plain_model = copy.deepcopy(cfg.model.to_dict() if hasattr(
        cfg.model, 'to_dict') else dict(cfg.model))
    plain_model['type'] = 'ImageClassifier'
    for key in SAN_CLASSIFIER_ONLY:
        plain_model.pop(key, None)
    plain_model['backbone'] = plain_backbone_cfg(model.backbone)
    preprocessor = copy.deepcopy(dict(cfg.get('data_preprocessor') or {}))
    preprocessor.update(plain_model.pop('data_preprocessor', None) or {})
    preprocessor['type'] = 'ClsDataPreprocessor'
    plain_model['data_preprocessor'] = preprocessor
    head = plain_model.get('head')
    if isinstance(head, dict):
        head.pop('init_cfg', None)
    crop_ratio = 0.875
    for transform in cfg.test_dataloader.dataset.get('pipeline', []):
        if transform.get('type') == 'ResizeCenterCrop':
            crop_ratio = transform.get('crop_ratio', 0.875)
    load = [dict(type='LoadImageFromFile')]
    if model.backbone.in_channels_ == 1:
        load = [dict(type='LoadImageFromFile', color_type='grayscale')]
    test_pipeline = load + [
        dict(type='ResizeEdge', scale=int(size / crop_ratio), edge='short'),
        dict(type='CenterCrop', crop_size=size),
        dict(type='PackInputs'),
    ]
    extra = {}
    module = getattr(MODELS.get(plain_model['backbone']['type']), '__module__',
                     '')
    if not module.startswith('mmpretrain'):  # registered by another package
        extra['custom_imports'] = dict(imports=[module.split('.')[0]],
                                       allow_failed_imports=False)
    return Config(dict(
        **extra,
        default_scope='mmpretrain',
        model=plain_model,
        test_pipeline=test_pipeline,
        # the dataset type lets mmpretrain.get_model find class names
        test_dataloader=dict(dataset=dict(
            type=cfg.test_dataloader.dataset.get('type', 'CustomDataset'),
            pipeline=test_pipeline)),
        exported_from=dict(size=size)))


def build_plain_model(plain_cfg: Config) -> nn.Module:
    """Build the exported model with mmpretrain's registry."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    return MODELS.build(copy.deepcopy(plain_cfg.model))


def export_model(cfg: Config, checkpoint: str, size: int, out_dir: str,
                 inference_mode: Optional[str] = None,
                 onnx: bool = False) -> Dict:
    """Write ``out_dir/config.py`` + ``out_dir/model.pth`` (and optionally
    ``model.onnx``): mmpretrain's own model with the kernels and BN of
    ``size`` baked in, checked against the SAN model on a random batch.

    Returns:
        dict: paths, the baked-in state and ``max_abs_diff`` of the logits.
    """
    import os
    import os.path as osp

    from mmpretrain import get_model
    os.makedirs(out_dir, exist_ok=True)
    if inference_mode is not None:
        cfg = copy.deepcopy(cfg)
        cfg.model.backbone.inference_mode = inference_mode
    san = get_model(cfg, pretrained=checkpoint)
    san.eval()
    state_dict, state = export_state_dict(san, size)
    plain_cfg = export_config(cfg, san, size)
    plain = build_plain_model(plain_cfg)
    plain.load_state_dict(state_dict, strict=True)
    plain.eval()

    channels = san.backbone.in_channels_
    x = torch.rand(2, channels, size, size,
                   generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (san(x, mode='tensor') - plain(x, mode='tensor')).abs().max()
    config_path = osp.join(out_dir, 'config.py')
    model_path = osp.join(out_dir, 'model.pth')
    plain_cfg.dump(config_path)
    torch.save({'state_dict': state_dict,
                'meta': dict(exported_size=size, scale=state.describe(),
                             source_checkpoint=checkpoint,
                             dataset_meta=getattr(san, '_dataset_meta', {})
                             or {})}, model_path)
    result = dict(config=config_path, checkpoint=model_path,
                  state=state.describe(), max_abs_diff=float(diff))
    if onnx:
        result.update(export_onnx(plain, x[:1], osp.join(out_dir,
                                                         'model.onnx')))
    return result


def export_onnx(plain: nn.Module, example: torch.Tensor, path: str) -> Dict:
    """ONNX export of the plain model's logits; checked with onnxruntime
    when it is installed."""

    class Logits(nn.Module):

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, mode='tensor')

    wrapper = Logits(plain).eval()
    try:
        torch.onnx.export(wrapper, (example, ), path, input_names=['input'],
                          output_names=['logits'], dynamo=False)
    except Exception as error:  # onnx missing or an unsupported op
        raise RuntimeError(
            f'ONNX export failed ({error}); install the `onnx` package '
            '(pip install onnx) and retry') from error
    result = dict(onnx=path)
    try:
        import onnxruntime
    except ImportError:
        result['onnx_check'] = 'onnxruntime not installed; not checked'
        return result
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    (onnx_logits, ) = session.run(None, {'input': example.numpy()})
    with torch.no_grad():
        expected = wrapper(example)
    result['onnx_max_abs_diff'] = float(
        (torch.from_numpy(onnx_logits) - expected).abs().max())
    return result
