import argparse

import pytest
import torch

from san_mm.apis.cli import config_with_options, train_config
from tests.conftest import REPO


def train_args(config, **overrides):
    """tools/train.py's arguments with their defaults (and a data root that
    exists)."""
    args = dict(config=config, work_dir=None, amp=False, no_pin_memory=False,
                no_persistent_workers=False, cfg_options=dict(data_root=REPO),
                compile=False,
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
        test_sizes=[30, 26], data_root=REPO)))
    assert cfg.train_dataloader.batch_size == 3
    assert cfg.test_cfg.test_sizes == plain.test_cfg.test_sizes == [30, 26]
    assert cfg.train_dataloader.dataset.pipeline[1].crop_ratio_range == (
        0.7, 1.0)
    assert config_with_options(tiny_config, []).train_dataloader.batch_size \
        == plain.train_dataloader.batch_size


def test_a_missing_data_root_fails_first_and_names_the_fix(tiny_config):
    args = train_args(tiny_config, cfg_options=dict(data_root='/no/such/dir'))
    with pytest.raises(FileNotFoundError, match=(
            r"'/no/such/dir', which does not exist.*one folder per class.*"
            r'--cfg-options data_root=')):
        train_config(args)
    cfg = train_config(train_args(tiny_config))  # carried to every dataset
    assert cfg.train_dataloader.dataset.data_root == REPO
    assert cfg.val_dataloader.dataset.data_root == REPO
