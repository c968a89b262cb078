"""SANClassifier: trains one image at all K sizes at once, with scale distillation."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..backbones import BaseScaleAdaptiveBackbone
from ..utils.data_preprocessor import SANDataPreprocessor
from ..utils.plain_init import init_weights_plain_last

LOSS_REDUCTIONS = ('sum', 'mean')


@MODELS.register_module()
class SANClassifier(ImageClassifier):
    """Image classifier for scale-adaptive backbones.

    ``loss`` takes a list of batches, one per training size (as produced by
    ``ResolutionSample`` + :class:`SANDataPreprocessor`), runs the network at
    each size (largest first; the backbone picks the kernels and BN of each
    size from the input), and returns cross-entropy at every size plus scale
    distillation between the sizes' logits, each term logged per size:
    ``loss_ce@224``, ``loss_kd@160``, ...

    ``predict`` and ``tensor`` work on a single batch of any size, so
    mmpretrain's inference APIs and evaluators use the model as is.

    Args:
        backbone (dict): A scale-adaptive backbone (``MetaResNet``,
            ``MetaMobileNetV2``).
        neck, head: As in ``ImageClassifier``.
        distill (dict, optional): Scale distillation loss config. Defaults to
            ``dict(type='ScaleDistillLoss', mode='dense')`` (the reference);
            None disables it.
        loss_reduction (str): ``'sum'`` adds the K cross-entropies and the
            distillation terms (the reference); ``'mean'`` divides the joint
            loss by the number of sizes in the iteration, which keeps the
            gradient scale of a single-size model (more stable with high
            learning rates on small data).
        num_sampled_sizes (int, optional): Cheaper training: per iteration,
            run the largest size plus this many sizes drawn at random from
            the others (the same draw for the whole batch). Each size then
            gets fewer updates (and distillation sees fewer pairs) in exchange
            for roughly ``(1 + n) / K`` of the compute. None (default) trains
            every size every iteration, as the reference.
        data_preprocessor (dict, optional): Defaults to
            ``SANDataPreprocessor``; must handle lists of sizes.
        train_cfg (dict, optional): Batch augments are refused (see
            :class:`SANDataPreprocessor`).
        init_cfg (dict, optional): e.g. ``dict(type='PretrainedFromPlain',
            checkpoint=...)`` to start from a plain mmpretrain checkpoint
            (kernels as B with A = 0, BN copied to every set, head kept when
            its shape matches).
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 distill: Optional[dict] = dict(type='ScaleDistillLoss',
                                                mode='dense'),
                 loss_reduction: str = 'sum',
                 num_sampled_sizes: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if isinstance(data_preprocessor, dict) or data_preprocessor is None:
            data_preprocessor = dict(data_preprocessor or {})
            data_preprocessor.setdefault('type', 'SANDataPreprocessor')
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f'unknown loss_reduction {loss_reduction!r}; '
                             f'expected one of {list(LOSS_REDUCTIONS)}')
        super().__init__(backbone, neck, head, pretrained, train_cfg,
                         data_preprocessor, init_cfg)
        if not isinstance(self.backbone, BaseScaleAdaptiveBackbone):
            raise TypeError(
                'SANClassifier needs a scale-adaptive backbone (MetaResNet, '
                f'MetaMobileNetV2), got {type(self.backbone).__name__}; use '
                'ImageClassifier for plain backbones')
        if not isinstance(self.data_preprocessor, SANDataPreprocessor):
            raise TypeError(
                'SANClassifier needs SANDataPreprocessor (it normalises each '
                'size separately); got '
                f'{type(self.data_preprocessor).__name__}, which would pad '
                'and stack the sizes into one tensor')
        num_sizes = len(self.backbone.train_sizes)
        if num_sampled_sizes is not None and not (
                isinstance(num_sampled_sizes, int)
                and 0 <= num_sampled_sizes < num_sizes):
            raise ValueError(
                f'num_sampled_sizes must be an int in 0..{num_sizes - 1} (the '
                'number of sizes drawn besides the largest), got '
                f'{num_sampled_sizes!r}')
        self.distill = MODELS.build(distill) if isinstance(distill,
                                                           dict) else distill
        self.loss_reduction = loss_reduction
        self.num_sampled_sizes = num_sampled_sizes

    def init_weights(self):
        init_weights_plain_last(self, super().init_weights)

    @property
    def train_sizes(self) -> Sequence[int]:
        return self.backbone.train_sizes

    @staticmethod
    def input_size(x: Tensor) -> int:
        """Resolution of a batch: its shorter spatial side."""
        return int(min(x.shape[-2:]))

    def select_sizes(self, inputs: List[Tensor]) -> List[Tensor]:
        """Order the batches largest first and draw the iteration's subset."""
        inputs = sorted(inputs, key=self.input_size, reverse=True)
        n = self.num_sampled_sizes
        if n is None or len(inputs) <= n + 1:
            return inputs
        drawn = torch.randperm(len(inputs) - 1)[:n].sort().values + 1
        return [inputs[0]] + [inputs[int(i)] for i in drawn]

    def forward(self,
                inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor' and isinstance(inputs, (list, tuple)):
            return [super(SANClassifier, self).forward(x, mode='tensor')
                    for x in inputs]
        return super().forward(inputs, data_samples, mode)

    def loss(self, inputs: Union[Tensor, List[Tensor]],
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Cross-entropy at every size + scale distillation.

        Args:
            inputs (Tensor | list[Tensor]): One ``(N, C, H, W)`` batch per
                size (any order), or a single batch.
            data_samples (list[DataSample]): Annotations, shared by the sizes.

        Returns:
            dict[str, Tensor]: ``loss_ce@<size>`` for every size,
            ``loss_kd@<size>`` for every distilled size, and the head's
            accuracy terms per size when it computes them.
        """
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        inputs = self.select_sizes(list(inputs))
        sizes = [self.input_size(x) for x in inputs]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f'each size must appear once, got sizes {sizes}')
        losses, logits = {}, []
        for size, x in zip(sizes, inputs):
            cls_score = self.head(self.extract_feat(x))
            logits.append(cls_score)
            for key, value in self.head._get_loss(cls_score,
                                                  data_samples).items():
                key = 'loss_ce' if key == 'loss' else key
                losses[f'{key}@{size}'] = value
        if self.distill is not None:
            losses.update(self.distill(logits, sizes))
        if self.loss_reduction == 'mean':
            losses = {
                key: value / len(sizes) if 'loss' in key else value
                for key, value in losses.items()
            }
        return losses

    def predict(self, inputs: Tensor,
                data_samples: Optional[List[DataSample]] = None, **kwargs):
        if isinstance(inputs, (list, tuple)):
            raise TypeError(
                'SANClassifier.predict takes one batch at one size, got a list '
                f'of {len(inputs)} sizes; evaluate each size separately (the '
                'MultiSizeTestLoop does) or use mode="tensor" for logits of a '
                'list')
        return super().predict(inputs, data_samples, **kwargs)
