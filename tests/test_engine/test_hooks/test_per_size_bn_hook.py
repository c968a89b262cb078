from mmengine.config import Config
from mmengine.runner import Runner

from san_mm.engine.hooks import PerSizeBNHook


def tensors(nested):
    if isinstance(nested, (list, tuple)):
        return [t for item in nested for t in tensors(item)]
    return [nested]


def test_calibration_dataloader_is_built_once_and_retargeted(
        tiny_config, image_folder, tmp_path, monkeypatch):
    cfg = Config.fromfile(tiny_config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = image_folder
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    builds = []
    build = runner.build_dataloader
    monkeypatch.setattr(runner, 'build_dataloader',
                        lambda *a, **k: builds.append(1) or build(*a, **k))
    hook = PerSizeBNHook(calibration_batch_size=3)
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
