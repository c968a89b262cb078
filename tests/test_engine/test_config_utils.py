import pytest
from mmengine.config import Config

from san_mm.utils import apply_overrides, with_transform_arg
from tests.conftest import REPO


def test_test_sizes_override_reaches_the_loops():
    cfg = Config.fromfile(f'{REPO}/configs/san_resnet18.py')
    options = {'test_sizes': [96, 224, 160]}
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)
    assert cfg.test_cfg.test_sizes == [224, 160, 96]
    assert cfg.val_cfg.test_sizes == [224, 160, 96]


def test_train_sizes_and_mode_overrides():
    cfg = Config.fromfile(f'{REPO}/configs/san_resnet18.py')
    options = {'train_sizes': [128, 224], 'inference_mode': 'ideal'}
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)
    assert cfg.model.backbone.train_sizes == [224, 128]
    assert cfg.train_dataloader.dataset.pipeline[1].sizes == [224, 128]
    assert cfg.val_cfg.test_sizes == [224, 128]  # validation follows
    assert cfg.test_cfg.test_sizes == [224, 192, 160, 128, 96]
    assert cfg.model.backbone.inference_mode == 'ideal'


def test_num_classes_and_data_root_reach_the_model_and_every_dataset():
    cfg = Config.fromfile(f'{REPO}/configs/custom/san_resnet18_custom.py')
    options = {'num_classes': 7, 'data_root': '/data/mine'}
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)
    assert cfg.model.head.num_classes == 7
    assert cfg.data_preprocessor.num_classes == 7
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/data/mine'


def test_bad_test_sizes_fail_before_anything_runs():
    cfg = Config.fromfile(f'{REPO}/configs/san_resnet18.py')
    options = {'test_sizes': [224, 0]}
    cfg.merge_from_dict(options)
    with pytest.raises(ValueError, match=r'test_sizes.*0'):
        apply_overrides(cfg, options)


def test_with_transform_arg_names_the_pipeline():
    loader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'),
                                         dict(type='CenterCrop'),
                                         dict(type='PackInputs')]))
    with pytest.raises(ValueError, match='ResizeCenterCrop.*CenterCrop'):
        with_transform_arg(loader, 'ResizeCenterCrop', 'size', 32, 'a loop')
    loader['dataset']['pipeline'][1] = dict(type='ResizeCenterCrop', size=8)
    wrapped = dict(dataset=dict(type='RepeatDataset', dataset=loader['dataset']))
    out = with_transform_arg(wrapped, 'ResizeCenterCrop', 'size', 32, 'x')
    assert out['dataset']['dataset']['pipeline'][1]['size'] == 32
    assert loader['dataset']['pipeline'][1]['size'] == 8  # copied, not mutated
