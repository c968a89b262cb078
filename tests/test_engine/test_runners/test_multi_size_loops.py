import pytest
from mmengine.config import Config
from mmengine.runner import Runner


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
