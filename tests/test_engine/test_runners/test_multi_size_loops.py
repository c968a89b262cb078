"""The multi-size validation / test loops, in-process on the tiny SAN
ResNet-18 and an image folder."""
import random

import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from san_mm.engine.runners import MultiSizeTestLoop
from tests.conftest import tiny_cfg


def test_test_size_too_small_fails_before_any_data_is_read(tiny_config,
                                                          tmp_path):
    cfg = Config.fromfile(tiny_config)
    # The data root does not exist: building a dataloader would fail with
    # another error, so the size check must come first.
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'no-such-folder')
    cfg.test_cfg.test_sizes = [32, 12]
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=(
            r'test size 12 is too small .*total stride is 32, so every size '
            r'must be at least 17.*remove it from test_sizes=\[32, 12\]')):
        runner.test()


class SizeRecorder(Hook):
    """Records the loop's size hook points and the size of every image the
    model is given."""

    def __init__(self):
        self.events = []

    def before_test_size(self, runner, size):
        self.events.append(('size', size))

    def after_test_size(self, runner, size, metrics):
        self.events.append(('metrics', size, sorted(metrics)))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.events += [tuple(img.shape[-2:]) for img in data_batch['inputs']]


def tiny_runner(tiny_config, image_folder, work_dir, **test_evaluator):
    cfg = tiny_cfg(tiny_config, image_folder, work_dir)
    cfg.default_hooks.checkpoint = None  # no training: nothing to save
    cfg.test_cfg.test_sizes = [32, 24, 20]
    if test_evaluator:
        cfg.test_evaluator = [cfg.test_evaluator, test_evaluator]
    return Runner.from_cfg(cfg)


def test_each_size_sees_its_images_and_gets_its_metrics_and_their_mean(
        tiny_config, image_folder, tmp_path, runner_on_cpu):
    runner = tiny_runner(tiny_config, image_folder, tmp_path, type='DumpResults',
                         out_file_path=str(tmp_path / 'predictions.pkl'))
    recorder = SizeRecorder()
    runner.register_hook(recorder)
    metrics = runner.test()
    # 12 validation images (batch 4), every one at each size, largest first
    expected = []
    for size in (32, 24, 20):
        expected += [('size', size)] + [(size, size)] * 12
        expected.append(('metrics', size, ['accuracy/top1']))
    assert recorder.events == expected
    top1 = [metrics[f'accuracy/top1@{size}'] for size in (32, 24, 20)]
    assert metrics['accuracy/top1@mean'] == pytest.approx(np.mean(top1))
    # a metric that writes a file writes one per size
    for size in (32, 24, 20):
        assert len(mmengine.load(tmp_path / f'predictions@{size}.pkl')) == 12
    assert not (tmp_path / 'predictions.pkl').exists()


def test_sizes_read_the_annotations_once_each_with_its_own_pipeline(
        tiny_config, image_folder, tmp_path, runner_on_cpu, monkeypatch):
    loop = tiny_runner(tiny_config, image_folder, tmp_path).test_loop
    first = loop.dataloader_for(32).dataset
    reads = []
    load = type(first).load_data_list
    monkeypatch.setattr(type(first), 'load_data_list',
                        lambda self: reads.append(1) or load(self))
    other = loop.dataloader_for(20).dataset
    assert not reads  # a copy of the first size's dataset, not read again
    assert len(other) == len(first) == 12
    assert first[0]['inputs'].shape[-2:] == (32, 32)
    assert other[0]['inputs'].shape[-2:] == (20, 20)
    assert loop.dataloader_for(20) is loop.dataloader_for(20)  # built once


def test_validation_moves_no_random_generator(tiny_config, image_folder,
                                              tmp_path, runner_on_cpu):
    runner = tiny_runner(tiny_config, image_folder, tmp_path)
    runner.model.train()  # a validation inside training
    draws = []
    for validate in (False, True):
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        if validate:
            runner.val_loop.run()
        draws.append((torch.rand(3).tolist(), np.random.rand(), random.random()))
    assert draws[0] == draws[1]


def test_a_built_dataloader_is_refused_with_the_fix(tiny_config, image_folder,
                                                    tmp_path, runner_on_cpu):
    runner = tiny_runner(tiny_config, image_folder, tmp_path)
    built = runner.build_dataloader(runner.cfg.test_dataloader)
    with pytest.raises(TypeError, match='pass the test_dataloader dict'):
        MultiSizeTestLoop(runner, built, runner.cfg.test_evaluator, [32, 24])
