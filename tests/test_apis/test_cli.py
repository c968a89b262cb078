import argparse

import pytest
import torch

from san_mm.apis.cli import config_with_options, train_config


def train_args(config, **overrides):
    """tools/train.py's arguments with their defaults."""
    args = dict(config=config, work_dir=None, amp=False, no_pin_memory=False,
                no_persistent_workers=False, cfg_options=None, compile=False,
                launcher='none', local_rank=0, resume=None,
                no_validate=False, auto_scale_lr=False, cuda_graph=False)
    args.update(overrides)
    return argparse.Namespace(**args)


def test_cuda_graph_flag_sets_the_models_option(tiny_config, monkeypatch):
    assert not train_config(train_args(tiny_config)).model.get(
        'cuda_graph_step')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = train_config(train_args(tiny_config, cuda_graph=True))
    assert cfg.model.cuda_graph_step is True


def test_cuda_graph_flag_without_a_gpu_fails_before_anything_is_built(
        tiny_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match='--cuda-graph .* needs a GPU'):
        train_config(train_args(tiny_config, cuda_graph=True))


def test_config_with_options_reads_what_the_tools_train(tiny_config):
    """``KEY=VALUE`` strings as ``--cfg-options`` applies them: parsed values
    (tuples, ints), list-index keys, and a top-level size override carried to
    the loops as tools/train.py carries it."""
    cfg = config_with_options(tiny_config, [
        'train_dataloader.batch_size=3', 'test_sizes=[30,26]',
        'train_dataloader.dataset.pipeline.1.crop_ratio_range=(0.7,1.0)'])
    plain = train_config(train_args(tiny_config, cfg_options=dict(
        test_sizes=[30, 26])))
    assert cfg.train_dataloader.batch_size == 3
    assert cfg.test_cfg.test_sizes == plain.test_cfg.test_sizes == [30, 26]
    assert cfg.train_dataloader.dataset.pipeline[1].crop_ratio_range == (
        0.7, 1.0)
    assert config_with_options(tiny_config, []).train_dataloader.batch_size \
        == plain.train_dataloader.batch_size
