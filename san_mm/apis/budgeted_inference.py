"""Inference under a compute or latency budget: mmpretrain's Inferencer at the size the table picks.

One SAN model serves any size; the size table stored with it (:mod:`san_mm.apis.size_table`) says
what each size costs and how accurate it was on validation data. :class:`BudgetedInferencer` picks
the most accurate size that fits ``max_macs`` / ``max_latency_ms`` (or takes ``size``), resizes
with the config's test pipeline at that size, runs that size's best inference mode and returns
mmpretrain's prediction dicts with the size, mode and MACs used.
"""
import copy
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from mmcv.image import imread
from mmengine.dataset import Compose, default_collate
from mmengine.utils import scandir
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.apis.base import InputType, ModelType

from san_mm.models.backbones import BaseScaleAdaptiveBackbone
from san_mm.registry import INFERENCERS
from san_mm.utils import with_transform_arg
from .size_table import (SizeTableError, choose_size, read_size_table,
                         validate_size_table)

__all__ = ['BudgetedInferencer', 'IMAGE_EXTENSIONS', 'list_images']

#: Files ``list_images`` picks from a folder (mmpretrain's ImageNet list).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')


def list_images(paths: Union[str, Sequence[str]]) -> List[str]:
    """Image files from files and folders (searched recursively, sorted).

    Raises:
        FileNotFoundError: For a path that does not exist.
        ValueError: When a folder holds no image files.
    """
    if isinstance(paths, str):
        paths = [paths]
    images = []
    for path in paths:
        if osp.isdir(path):
            found = sorted(osp.join(path, name) for name in scandir(
                path, suffix=IMAGE_EXTENSIONS, recursive=True,
                case_sensitive=False))
            if not found:
                raise ValueError(
                    f'folder {path} holds no image files (looked for '
                    f'{", ".join(IMAGE_EXTENSIONS)}, recursively); pass image '
                    'files or a folder of images')
            images += found
        elif osp.isfile(path):
            images.append(path)
        else:
            raise FileNotFoundError(
                f'image {path} does not exist; pass image files or folders')
    return images


@INFERENCERS.register_module()
class BudgetedInferencer(ImageClassificationInferencer):
    """mmpretrain's image-classification inferencer, run at the size that
    serves a budget.

    The size comes from the model's size table (``meta['size_table']`` of the
    checkpoint, written by ``tools/sweep_sizes.py CONFIG CKPT --save-table
    OUT.pth``): the most accurate size within ``max_macs`` and
    ``max_latency_ms`` (see :func:`~san_mm.apis.choose_size` for the rule and
    its ties), or ``size``; with none of them, the most accurate size. Images
    go through the config's test pipeline at that size (``ResizeCenterCrop``
    set to it, as ``tools/test.py`` does) and the backbone runs the size's
    best inference mode, so predictions equal ``tools/test.py`` at that size
    and mode.

    Args:
        model (BaseModel | str | Config): A config (path) or a built model,
            as for :class:`mmpretrain.apis.ImageClassificationInferencer`.
        pretrained (str | bool): The checkpoint holding the table. Defaults
            to True (a built model as it is; then pass ``size_table``).
        device (str | torch.device, optional): Device to run on.
        classes (Sequence[str], optional): Class names; by default those of
            the checkpoint's ``dataset_meta``.
        size_table (dict, optional): Use this table instead of the
            checkpoint's.
        max_macs (float, optional): Most multiply-accumulates per image.
        max_latency_ms (float, optional): Most milliseconds per batch, as
            measured when the table was made (``--latency``).
        size (int, optional): Serve this size of the table.
        **kwargs: Passed to :func:`mmpretrain.get_model`.

    Example:
        >>> from san_mm.apis import BudgetedInferencer
        >>> inferencer = BudgetedInferencer(
        ...     'configs/fashion_mnist/san_resnet18_fmnist.py',
        ...     pretrained='sized.pth', max_macs=5e6)
        >>> inferencer('shirt.png')[0]
        {'pred_scores': array([...]), 'pred_label': ..., 'pred_score': ...,
         'pred_class': ..., 'size': ..., 'inference_mode': ..., 'macs': ...,
         'top1': ...}
    """

    def __init__(self,
                 model: ModelType,
                 pretrained: Union[bool, str] = True,
                 device: Union[str, torch.device, None] = None,
                 classes=None,
                 size_table: Optional[dict] = None,
                 max_macs: Optional[float] = None,
                 max_latency_ms: Optional[float] = None,
                 size: Optional[int] = None,
                 **kwargs) -> None:
        if size_table is None:
            if not isinstance(pretrained, str):
                raise SizeTableError(
                    'BudgetedInferencer needs a size table: pass the '
                    'checkpoint that holds one as pretrained=..., or '
                    'size_table=...; add one to a checkpoint with: python '
                    'tools/sweep_sizes.py CONFIG CKPT --save-table OUT.pth')
            size_table = read_size_table(pretrained)  # fails before building
        self.size_table = validate_size_table(size_table)
        super().__init__(model, pretrained=pretrained, device=device,
                         classes=classes, **kwargs)
        backbone = getattr(self.model, 'backbone', None)
        if not isinstance(backbone, BaseScaleAdaptiveBackbone):
            raise TypeError(
                'BudgetedInferencer needs a model with a scale-adaptive '
                f'backbone, got {type(backbone).__name__}; use a SAN config')
        self.backbone = backbone
        self._imread_flag = 'grayscale' if backbone.in_channels_ == 1 \
            else 'color'
        self._pipelines: Dict[int, Callable] = {}
        self.choice: dict = {}
        self.select(max_macs=max_macs, max_latency_ms=max_latency_ms,
                    size=size)

    def select(self,
               max_macs: Optional[float] = None,
               max_latency_ms: Optional[float] = None,
               size: Optional[int] = None) -> dict:
        """Choose the size for a budget (or ``size``) and prepare the
        pipeline and inference mode for it.

        Returns:
            dict: The choice (:func:`~san_mm.apis.choose_size`): ``size``,
            ``inference_mode``, ``macs``, ``params``, ``top1``, ...
        """
        choice = choose_size(self.size_table, max_macs=max_macs,
                             max_latency_ms=max_latency_ms, size=size)
        chosen, mode = choice['size'], choice['inference_mode']
        if (mode == 'calibrated' and chosen not in self.backbone.train_sizes
                and chosen not in self.backbone.calibrated_sizes):
            raise SizeTableError(
                f"size {chosen}'s best mode is 'calibrated', but the model "
                'has no calibrated BN statistics for it (it has them for '
                f'{self.backbone.calibrated_sizes}); load the checkpoint that '
                'holds the table (tools/sweep_sizes.py --save-table writes '
                'them into it), not the checkpoint it was swept from')
        self.backbone.check_size_fits(chosen, 'the chosen size',
                                      'sweep larger sizes')
        if chosen not in self._pipelines:
            cfg = copy.deepcopy(self.config)
            cfg.test_dataloader = with_transform_arg(
                cfg.test_dataloader, 'ResizeCenterCrop', 'size', chosen,
                'BudgetedInferencer')
            self._pipelines[chosen] = super()._init_pipeline(cfg)
        self.pipeline = self._pipelines[chosen]
        self.choice = choice
        return choice

    def __call__(self,
                 inputs: InputType,
                 return_datasamples: bool = False,
                 batch_size: int = 1,
                 max_macs: Optional[float] = None,
                 max_latency_ms: Optional[float] = None,
                 size: Optional[int] = None,
                 **kwargs) -> list:
        """Predict ``inputs`` at the chosen size.

        Args:
            inputs (str | array | list): Image paths (a folder: its files),
                arrays, or a list of them.
            return_datasamples (bool): Return :obj:`DataSample` objects (the
                choice in their metainfo) instead of dicts.
            batch_size (int): Batch size. Defaults to 1.
            max_macs, max_latency_ms, size: Choose again for this call and
                later ones (see :meth:`select`); by default the current
                choice is kept.
            **kwargs: Visualisation options of the parent class.

        Returns:
            list: One dict per image: mmpretrain's ``pred_scores``,
            ``pred_label``, ``pred_score``, ``pred_class``, plus ``size``,
            ``inference_mode``, ``macs`` and ``top1`` (the table's accuracy
            at that size).
        """
        if max_macs is not None or max_latency_ms is not None or \
                size is not None:
            self.select(max_macs=max_macs, max_latency_ms=max_latency_ms,
                        size=size)
        with self.backbone.at_size(self.choice['size'],
                                   self.choice['inference_mode']):
            results = super().__call__(
                inputs, return_datasamples=return_datasamples,
                batch_size=batch_size, **kwargs)
        used = {k: self.choice[k]
                for k in ('size', 'inference_mode', 'macs', 'top1')}
        for result in results:
            if return_datasamples:
                result.set_metainfo(used)
            else:
                result.update(used)
        return results

    def preprocess(self, inputs: List[InputType], batch_size: int = 1):
        """As the parent's, but one-channel models read images as grayscale
        (e.g. Fashion-MNIST)."""

        def load_image(input_):
            img = imread(input_, flag=self._imread_flag)
            if img is None:
                raise ValueError(f'failed to read image {input_}; pass an '
                                 'image file or array')
            return dict(img=img, img_shape=img.shape[:2],
                        ori_shape=img.shape[:2])

        pipeline = Compose([load_image, self.pipeline])
        chunked_data = self._get_chunk_data(map(pipeline, inputs), batch_size)
        yield from map(default_collate, chunked_data)
