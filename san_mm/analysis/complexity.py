"""FLOPs and parameters per input size, through ``mmengine.analysis``'s FlopAnalyzer."""
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from san_mm.models.utils import MetaConv2d, PrivateBatchNorm2d


def deployed_parameter_count(model: nn.Module) -> int:
    """Parameters of the network as it runs at one size: each generated conv
    counts its kernel once (``B + s * A`` is one tensor once generated) and
    each private BN one set. Equals the plain ResNet / MobileNetV2 count."""
    skip = set()
    for module in model.modules():
        if isinstance(module, MetaConv2d) and module.weight_residual is not None:
            skip.add(id(module.weight_residual))
        elif isinstance(module, PrivateBatchNorm2d):
            for extra in list(module.sets)[1:]:
                skip.update(id(p) for p in extra.parameters())
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def image_channels(model: nn.Module) -> int:
    """The channels of the images ``model`` reads: its first convolution's
    input channels (1 for the Fashion-MNIST models)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f'{type(model).__name__} has no convolution to read '
                         'the image channels from')
    return conv.in_channels


MAC_OPS = ('aten::_convolution', 'aten::addmm', 'aten::linear', 'aten::mm',
           'aten::matmul', 'aten::bmm', 'aten::einsum')


def _not_counted(inputs, outputs) -> Counter:
    return Counter()


def complexity_per_size(model: nn.Module, sizes: Sequence[int],
                        in_channels: Optional[int] = None,
                        macs_only: bool = True) -> List[Dict]:
    """Multiply-accumulates and parameters of ``model`` at each size.

    Args:
        model (nn.Module): A classifier whose ``forward(inputs)`` runs the
            network (mmpretrain classifiers default to ``mode='tensor'``).
        sizes (Sequence[int]): Square input sizes.
        in_channels (int, optional): Image channels; by default
            :func:`image_channels`.
        macs_only (bool): Count only convolutions and linear layers (the
            SAN paper's "MFLOPs"); False adds mmengine's other counted ops
            (normalisation, pooling).

    Returns:
        list[dict]: ``{'size', 'flops', 'params', 'deployed_params'}`` per
        size. ``flops`` are mmengine's counts, i.e. multiply-accumulates.
    """
    if in_channels is None:
        in_channels = image_channels(model)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for size in sizes:
            param = next(model.parameters())
            inputs = torch.zeros(1, in_channels, size, size,
                                 device=param.device, dtype=param.dtype)
            # Only the active size's BN set runs: the others are "uncalled"
            # by design, so mmengine's per-module warnings are noise here.
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            if macs_only:
                # Multiply-accumulates of convolutions and linear layers
                # only, the quantity of the paper's (M)FLOPs tables.
                analyzer.set_op_handle(**{
                    op: _not_counted for op in list(analyzer._op_handles)
                    if op not in MAC_OPS})
            rows.append(dict(size=int(size), flops=int(analyzer.total()),
                             params=sum(p.numel() for p in model.parameters()),
                             deployed_params=deployed_parameter_count(model)))
    finally:
        model.train(was_training)
    return rows
