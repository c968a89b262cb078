"""Data preprocessor for batches that hold one image tensor per training size."""
from typing import List, Optional

import torch
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SANDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` that also accepts a list of sizes.

    mmpretrain's stock preprocessor, given views of different sizes, pads
    and stacks them into one tensor without complaint. This one normalises
    each size on its own and returns a list of ``(N, C, H_k, W_k)`` tensors,
    largest first, with the labels set once on the data samples. A single
    batch (test time, inference APIs) is handled exactly as the parent does.

    Accepted ``inputs`` layouts:

    - ``Tensor (N, C, H, W)`` or a list of ``N`` tensors ``(C, H, W)``: one
      size (parent behaviour);
    - list of ``K`` tensors ``(N, C, H_k, W_k)``: K sizes, from
      ``default_collate`` over :class:`ResolutionSample` outputs;
    - list of ``K`` lists of ``N`` tensors ``(C, H_k, W_k)``: K sizes, from
      ``pseudo_collate`` (mmpretrain's default collate function), which
      transposes each sample's list of views.

    Args:
        mean, std (Sequence[float], optional): Per-channel normalisation, as
            in ``ClsDataPreprocessor``. The reference implementation feeds
            [0, 1] inputs without normalisation: ``mean=[0, 0, 0]`` and
            ``std=[255, 255, 255]`` reproduce that (needed for its weights).
        batch_augments (dict, optional): Refused when not None: Mixup/CutMix
            draw a pairing and a mixing box per batch, and applying them to
            each size independently would give every size different targets,
            which breaks scale distillation.
        channels_last (bool): Return the batches in channels-last memory
            format (for a model converted to it: ``SANClassifier(
            channels_last=True)`` sets this). Defaults to False.
        **kwargs: Other ``ClsDataPreprocessor`` arguments.
    """

    def __init__(self, *args, batch_augments: Optional[dict] = None,
                 channels_last: bool = False, **kwargs):
        self.channels_last = bool(channels_last)
        if batch_augments is not None:
            raise ValueError(
                f'SANDataPreprocessor does not support batch_augments '
                f'({batch_augments!r}): mixing each training size separately '
                'would give the sizes different targets and break scale '
                'distillation; remove batch_augments from the config')
        super().__init__(*args, batch_augments=None, **kwargs)

    @staticmethod
    def _split_sizes(inputs) -> Optional[List]:
        """The per-size batches if ``inputs`` holds several sizes, else None."""
        if isinstance(inputs, torch.Tensor) or not inputs:
            return None
        first = inputs[0]
        if isinstance(first, (list, tuple)):
            # pseudo_collate transposes each sample's K views into K lists of
            # N images; every list must hold one size.
            batches = []
            for images in inputs:
                shapes = sorted({tuple(img.shape) for img in images})
                if len(shapes) != 1:
                    raise ValueError(
                        'each size must have one image shape across the '
                        f'batch, got {shapes}; crop every image to the same '
                        'sizes in the pipeline (ResolutionSample for '
                        'training, ResizeCenterCrop for testing)')
                batches.append(torch.stack(list(images)))
            return batches
        if isinstance(first, torch.Tensor) and first.dim() == 4:
            return list(inputs)  # default_collate of K views
        return None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self._forward(data, training)
        if self.channels_last:
            inputs = data['inputs']
            data['inputs'] = [_channels_last(x) for x in inputs] \
                if isinstance(inputs, list) else _channels_last(inputs)
        return data

    def _forward(self, data: dict, training: bool) -> dict:
        per_size = self._split_sizes(data['inputs'])
        if per_size is None:
            return super().forward(data, training)
        data_samples = data.get('data_samples', None)
        outputs = []
        for k, batch in enumerate(per_size):
            # Labels are packed once, with the first size.
            processed = super().forward(
                dict(inputs=batch,
                     data_samples=data_samples if k == 0 else None), training)
            if k == 0:
                data_samples = processed['data_samples']
            outputs.append(processed['inputs'])
        return dict(inputs=outputs, data_samples=data_samples)


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last) \
        if isinstance(x, torch.Tensor) and x.dim() == 4 else x
