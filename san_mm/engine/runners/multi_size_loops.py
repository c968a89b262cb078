"""Validation and test loops that evaluate every size of ``test_sizes`` in one run."""
import contextlib
import copy
import os.path as osp
from typing import Dict, List, Sequence, Union

import numpy as np
from mmengine.evaluator import Evaluator
from mmengine.runner import TestLoop, ValLoop
from torch.utils.data import DataLoader

from san_mm.datasets.transforms import ResizeCenterCrop
from san_mm.models.backbones import BaseScaleAdaptiveBackbone
from san_mm.models.utils import validate_sizes
from san_mm.registry import LOOPS
from san_mm.utils import preserved_random_states, with_transform_arg
from ..compile import prepare_compile
from ..utils import unwrap_model


class MultiSizeLoopMixin:
    """Shared by :class:`MultiSizeValLoop` and :class:`MultiSizeTestLoop`.

    For each size ``r`` (largest first) the loop builds the dataloader with
    every ``ResizeCenterCrop`` of its pipeline set to ``r`` (built once and
    reused), calls the ``before_<stage>_size`` hook point (the per-size BN
    hook prepares BN there), runs the stock iteration and evaluation, and
    renames each metric ``name@r``. Numeric metrics also get ``name@mean``,
    the mean over the sizes (the reference selects its best epoch on the mean
    top-1).
    """
    stage = ''  # 'val' or 'test': hook names and the loss buffer

    def __init__(self, runner, dataloader: Dict,
                 evaluator: Union[Evaluator, Dict, List],
                 test_sizes: Sequence[int], fp16: bool = False):
        self.test_sizes = validate_sizes(test_sizes, 'test_sizes')
        backbone = getattr(unwrap_model(runner), 'backbone', None)
        if isinstance(backbone, BaseScaleAdaptiveBackbone):
            # Before any dataloader is built: a size the network cannot
            # run meaningfully fails here, not after calibration or data.
            for size in self.test_sizes:
                backbone.check_size_fits(
                    size, 'test size', 'remove it from test_sizes='
                    f'{list(self.test_sizes)} ({self.stage}_cfg)')
        if not isinstance(dataloader, dict):
            raise TypeError(
                f'{type(self).__name__} builds one dataloader per size and '
                'needs the dataloader config (a dict), got a built '
                f'{type(dataloader).__name__}; pass the '
                f'{self.stage}_dataloader dict to the Runner instead')
        self._dataloader_cfg = copy.deepcopy(dataloader)
        self._dataloaders: Dict[int, DataLoader] = {}
        super().__init__(runner, self._size_cfg(self.test_sizes[0]), evaluator,
                         fp16)
        self._dataloaders[self.test_sizes[0]] = self.dataloader
        # mmengine never compiles evaluation; with `compile` in the config
        # the backbone is compiled (one static graph per size).
        prepare_compile(runner, len(self.test_sizes))

    def run(self) -> dict:
        # Evaluation (calibration crops, dataloader seeds) must not move the
        # generators training draws from: a run validated every epoch trains
        # exactly like one that is not, and like one resumed after a kill.
        with preserved_random_states():
            return self._run()

    def _run(self) -> dict:
        stage = self.stage
        self.runner.call_hook(f'before_{stage}')
        self.runner.call_hook(f'before_{stage}_epoch')
        self.runner.model.eval()
        getattr(self, f'{stage}_loss').clear()
        metrics = self._run_sizes(self.run_iter)
        self.runner.call_hook(f'after_{stage}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{stage}')
        return metrics

    def _size_cfg(self, size: int) -> dict:
        return with_transform_arg(self._dataloader_cfg, 'ResizeCenterCrop',
                                  'size', size, type(self).__name__)

    def dataloader_for(self, size: int) -> DataLoader:
        """The dataloader of ``size``. Its dataset is a copy of the first
        size's (mmengine's ``build_dataloader`` deep-copies it) with
        ``ResizeCenterCrop`` set to ``size``: building a dataset again per
        size would read its annotations again."""
        if size not in self._dataloaders:
            cfg = self._size_cfg(size)
            first = self._dataloaders[self.test_sizes[0]].dataset
            pipeline = getattr(first, 'pipeline', None)
            if any(isinstance(t, ResizeCenterCrop)
                   for t in getattr(pipeline, 'transforms', ())):
                dataset = copy.copy(first)
                dataset.pipeline = copy.deepcopy(pipeline)
                for transform in dataset.pipeline.transforms:
                    if isinstance(transform, ResizeCenterCrop):
                        transform.set_size(size)
                cfg['dataset'] = dataset
            self._dataloaders[size] = self.runner.build_dataloader(
                cfg, seed=self.runner.seed)
        return self._dataloaders[size]

    def _run_sizes(self, run_iter) -> dict:
        metrics = {}
        per_size: Dict[str, List[float]] = {}
        for size in self.test_sizes:
            self.dataloader = self.dataloader_for(size)
            self.runner.call_hook(f'before_{self.stage}_size', size=size)
            for idx, data_batch in enumerate(self.dataloader):
                run_iter(idx, data_batch)
            with _per_size_dump_paths(self.evaluator, size):
                size_metrics = self.evaluator.evaluate(
                    len(self.dataloader.dataset))
            for name, value in size_metrics.items():
                metrics[f'{name}@{size}'] = value
                if isinstance(value, (int, float, np.number)):
                    per_size.setdefault(name, []).append(float(value))
            self.runner.call_hook(f'after_{self.stage}_size', size=size,
                                  metrics=size_metrics)
        for name, values in per_size.items():
            if len(values) == len(self.test_sizes):
                metrics[f'{name}@mean'] = float(np.mean(values))
        return metrics


@contextlib.contextmanager
def _per_size_dump_paths(evaluator: Evaluator, size: int):
    """Metrics that write files (``DumpResults``) write one file per size,
    ``<stem>@<size><ext>``, instead of overwriting one file."""
    originals = []
    for metric in evaluator.metrics:
        path = getattr(metric, 'out_file_path', None)
        if isinstance(path, str):
            stem, ext = osp.splitext(path)
            originals.append((metric, path))
            metric.out_file_path = f'{stem}@{size}{ext}'
    try:
        yield
    finally:
        for metric, path in originals:
            metric.out_file_path = path


@LOOPS.register_module()
class MultiSizeValLoop(MultiSizeLoopMixin, ValLoop):
    """``ValLoop`` over every size of ``test_sizes``.

    Args:
        runner (Runner): The runner.
        dataloader (dict): Dataloader config whose pipeline contains
            ``ResizeCenterCrop``.
        evaluator (Evaluator | dict | list): Metrics.
        test_sizes (Sequence[int]): Sizes to evaluate.
        fp16 (bool): Autocast while evaluating.
    """
    stage = 'val'


@LOOPS.register_module()
class MultiSizeTestLoop(MultiSizeLoopMixin, TestLoop):
    """``TestLoop`` over every size of ``test_sizes`` (arguments as
    :class:`MultiSizeValLoop`)."""
    stage = 'test'
