import pytest
import torch
from mmengine.runner import Runner

from san_mm.engine.hooks import PerSizeBNHook
from tests.conftest import tiny_cfg


def tensors(nested):
    if isinstance(nested, (list, tuple)):
        return [t for item in nested for t in tensors(item)]
    return [nested]


@pytest.mark.parametrize('view', ['test', 'train'])
def test_calibration_dataloader_is_built_once_and_retargeted(
        tiny_config, image_folder, tmp_path, monkeypatch, view):
    cfg = tiny_cfg(tiny_config, image_folder, tmp_path)
    runner = Runner.from_cfg(cfg)
    builds = []
    build = runner.build_dataloader
    monkeypatch.setattr(runner, 'build_dataloader',
                        lambda *a, **k: builds.append(1) or build(*a, **k))
    hook = PerSizeBNHook(calibration_batch_size=3, calibration_view=view)
    seen = {}
    for size in (20, 28, 20):
        loader = hook.calibration_dataloader(runner, size)
        batch = next(iter(loader))
        # Every view of every image at the requested size only.
        shapes = {tuple(t.shape[-2:]) for t in tensors(batch['inputs'])}
        assert shapes == {(size, size)}
        seen.setdefault(size, []).append(
            [s.img_path for s in batch['data_samples']])
    assert len(builds) == 1
    # The same images for every size and every pass (seeded sampler).
    assert seen[20][0] == seen[20][1] == seen[28][0]


def test_test_view_calibrates_on_training_images_as_the_test_pipeline_sees_them(
        tiny_config, image_folder, tmp_path):
    cfg = tiny_cfg(tiny_config, image_folder, tmp_path)
    runner = Runner.from_cfg(cfg)
    hook = PerSizeBNHook(calibration_batch_size=4)
    batch = next(iter(hook.calibration_dataloader(runner, 20)))
    paths = [s.img_path for s in batch['data_samples']]
    assert all('/train/' in p for p in paths)  # training images, not test
    # Exactly the test pipeline at 20 px (no random crop, no flip).
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    test_view = Compose([dict(type='LoadImageFromFile'),
                         dict(type='ResizeCenterCrop', size=20),
                         dict(type='PackInputs')])
    for path, image in zip(paths, batch['inputs']):
        assert torch.equal(image, test_view(dict(img_path=path))['inputs'])


def test_unknown_calibration_view_is_refused():
    with pytest.raises(ValueError, match="calibration_view 'val'.*'test', 'train'"):
        PerSizeBNHook(calibration_view='val')
