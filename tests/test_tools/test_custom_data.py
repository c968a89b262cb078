"""Your own images, end to end (CPU): configs/custom/san_regnet_custom.py on a tiny folder of PNG
files, trained with `--cfg-options data_root=...`, tested at three sizes, swept into a size table
and served under a compute budget, as docs/any_backbone.md shows."""
import json
import os
import re

import pytest
import torch

from san_mm.apis import read_size_table
from tests.conftest import (CLASSES, REPO, cpu_tool_env, run_tool,
                            write_image_folder)

TEST_SIZES = (32, 28, 24)  # the training sizes and one between them
#: Each tool on the CPU with one thread: the tiny model gains nothing from a
#: second, and where another process holds the other core, two threads wait
#: on each other.
ENV = cpu_tool_env()  # one thread (tests/conftest.py)

#: The RegNet config with a tiny arch and a CPU-test schedule; what a user
#: passes on the command line (data_root, classes, sizes) is not here.
TINY = """_base_ = [{base!r}]
model = dict(backbone=dict(backbone=dict(
    arch=dict(_delete_=True, w0=8, wa=8, wm=1.5, group_w=8, depth=5,
              bot_mul=1.0),
    stem_channels=8)), head=dict(in_channels=40))
train_dataloader = dict(batch_size=4, num_workers=0)
val_dataloader = dict(batch_size=4, num_workers=0)
test_dataloader = dict(batch_size=4, num_workers=0)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = dict(end=2, T_max=2)
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
"""


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train once: the folder, the work dir and the config as trained
    (mmengine writes it to the work dir, the command line applied)."""
    root = tmp_path_factory.mktemp('custom')
    images = write_image_folder(str(root / 'my_images'))
    config = root / 'tiny_san_regnet_custom.py'
    config.write_text(TINY.format(base=os.path.join(
        REPO, 'configs', 'custom', 'san_regnet_custom.py')))
    work_dir = root / 'work'
    _, log = run_tool('train.py', config, '--work-dir', work_dir,
                      '--cfg-options', f'data_root={images}',
                      'num_classes=3',
                      'train_sizes=[32,24]', env=ENV)
    return dict(images=images, work_dir=work_dir, log=log,
                config=str(work_dir / config.name),
                checkpoint=str(work_dir / 'epoch_2.pth'))


def test_training_reads_the_folder_at_every_size(trained):
    log = trained['log']
    for key in ('loss_ce@32', 'loss_ce@24', 'loss_kd@24',
                'accuracy/top1@32', 'accuracy/top1@24', 'accuracy/top1@mean'):
        assert key in log
    assert 'loss_ce@224' not in log  # train_sizes reached the pipeline
    assert os.path.isfile(trained['checkpoint'])
    checkpoint = torch.load(trained['checkpoint'], map_location='cpu',
                            weights_only=False)
    assert list(checkpoint['meta']['dataset_meta']['classes']) == sorted(
        CLASSES)  # the sub-folders are the classes
    head = checkpoint['state_dict']['head.fc.weight']
    assert head.shape == (3, 40)
    with open(trained['config']) as f:  # the config as trained
        dumped = f.read()
    assert f"data_root='{trained['images']}'" in dumped


def test_test_sizes_and_the_size_table_and_budgeted_inference(
        trained, tmp_path):
    config, checkpoint = trained['config'], trained['checkpoint']
    # tools/test.py at three sizes, with the config as trained
    metrics_out = tmp_path / 'metrics.json'
    sizes = ','.join(map(str, TEST_SIZES))
    run_tool('test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
             '--metrics-out', metrics_out, '--cfg-options',
             f'test_sizes=[{sizes}]', env=ENV)
    metrics = json.loads(metrics_out.read_text())
    for size in TEST_SIZES:
        assert 0 <= metrics[f'accuracy/top1@{size}'] <= 100
    assert 'accuracy/top1@mean' in metrics
    # the size table, stored with the model
    sized = tmp_path / 'sized.pth'
    run_tool('sweep_sizes.py', config, checkpoint, '--sizes', *TEST_SIZES,
             '--calibration-images', 4, '--save-table', sized,
             '--work-dir', tmp_path / 'sweep', env=ENV)
    table = read_size_table(str(sized))
    assert (table['dataset'], table['num_images']) == ('CustomDataset', 12)
    assert [row['size'] for row in table['sizes']] == list(TEST_SIZES)
    assert [row['trained'] for row in table['sizes']] == [True, False, True]
    # served under a budget that the two smaller sizes fit
    macs = sorted(row['macs'] for row in table['sizes'])
    budget = (macs[1] + macs[2]) / 2
    _, log = run_tool('infer.py', config, sized,
                      os.path.join(trained['images'], 'val'),
                      '--max-mmacs', budget / 1e6, env=ENV)
    chosen = re.search(r': size (\d+) px, (\w+) mode, ', log)
    assert chosen, log[-3000:]
    size = int(chosen.group(1))
    row = next(r for r in table['sizes'] if r['size'] == size)
    assert size in (28, 24) and row['macs'] <= budget
    rows = re.findall(r'^\| (\S+\.png) \| (\w+) \| ', log, re.M)
    assert len(rows) == 12 and {r[1] for r in rows} <= set(CLASSES)
