"""Every shipped config parses and builds through mmpretrain's own API."""
import glob
import os

import pytest
from mmengine.config import Config
from mmpretrain import get_model

from tests.conftest import REPO

CONFIGS = sorted(
    os.path.relpath(path, REPO)
    for path in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'),
                          recursive=True) if '_base_' not in path)


def test_there_is_a_config_per_paper_experiment():
    names = set(CONFIGS)
    for arch in ('resnet18', 'resnet50', 'mobilenetv2'):
        assert f'configs/san_{arch}.py' in names
        for size in (224, 192, 160, 128, 96):
            assert f'configs/baselines/{arch}_{size}.py' in names
        for ablation in ('no_meta', 'no_kd'):
            assert f'configs/ablations/san_{arch}_{ablation}.py' in names
        for mode in ('ideal', 'calibrated', 'data_free'):
            assert f'configs/unseen_sizes/san_{arch}_{mode}.py' in names


# The last model built, by its model dict: consecutive configs that differ in their data only
# (the baselines at each size) share it.
_BUILT = {}


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_with_get_model(config):
    cfg = Config.fromfile(os.path.join(REPO, config))
    key = repr(cfg.model.to_dict())
    if key not in _BUILT:
        _BUILT.clear()
        _BUILT[key] = get_model(cfg)  # (a path would be parsed again)
    model = _BUILT[key]
    assert type(model).__name__ == cfg.model.type
    if cfg.model.type == 'SANClassifier':
        assert list(model.backbone.train_sizes) == sorted(
            cfg.train_dataloader.dataset.pipeline[-2].sizes, reverse=True)
        assert cfg.test_cfg.type == 'MultiSizeTestLoop'


def test_mobilenet_v2_mutualnet_test_sizes():
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'san_mobilenetv2.py'))
    assert cfg.test_cfg.test_sizes == list(range(224, 95, -16))
