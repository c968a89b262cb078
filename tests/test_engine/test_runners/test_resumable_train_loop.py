"""Lossless resume after SIGKILL, and same seed -> same run (tools/train.py, CPU)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import REPO

# 24 training images, batch 4: 6 iterations per epoch, 3 epochs. Mid-epoch
# checkpoints every 4 iterations (4, 8, 16; 12 is an epoch end), validation
# (with BN calibration at an unseen size, which draws random crops) after
# every epoch.
ITERS_PER_EPOCH = 6
KILL_HOOK = '''
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIteration(Hook):
    priority = 'LOWEST'  # after every other hook, checkpoints included

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def write_config(folder, tiny_config, image_folder, kill_at=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'kill_hook.py'), 'w') as f:
        f.write(KILL_HOOK)
    kill = f"dict(type='KillAtIteration', iteration={kill_at})," \
        if kill_at else ''
    config = os.path.join(folder, 'config.py')
    with open(config, 'w') as f:
        f.write(textwrap.dedent(f'''
            _base_ = ['{tiny_config}']
            custom_imports = dict(imports=['san_mm', 'kill_hook'],
                                  allow_failed_imports=False)
            train_cfg = dict(max_epochs=3)
            param_scheduler = dict(end=3, T_max=3)
            val_cfg = dict(test_sizes=[32, 20])
            custom_hooks = [
                dict(type='PerSizeBNHook', inference_mode='calibrated',
                     calibration_images=8, recalibrate=True),
                dict(type='LosslessResumeHook', interval=4),
                {kill}
            ]
            default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))
            data_root = '{image_folder}'
            train_dataloader = dict(dataset=dict(data_root=data_root))
            val_dataloader = dict(dataset=dict(data_root=data_root))
            test_dataloader = dict(dataset=dict(data_root=data_root))
            '''))
    return config


def train(config, work_dir, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(config), REPO, os.environ.get('PYTHONPATH', '')]))
    out = subprocess.run([sys.executable, os.path.join(REPO, 'tools',
                                                       'train.py'), config,
                          '--work-dir', str(work_dir), *args],
                         capture_output=True, text=True, cwd=REPO, env=env)
    return out.returncode, out.stdout + out.stderr


def final_weights(work_dir):
    return torch.load(os.path.join(work_dir, 'epoch_3.pth'),
                      weights_only=True)['state_dict']


def val_metrics(work_dir):
    """Every validation record of the run (scalars.json), in order."""
    records = []
    # One timestamped folder per run; a resumed run's come after the killed's.
    for root, _, files in sorted(os.walk(work_dir)):
        if 'scalars.json' in files:
            with open(os.path.join(root, 'scalars.json')) as f:
                records += [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if 'time' not in k}
            for r in records if 'accuracy/top1@mean' in r]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, tiny_config, image_folder):
    folder = tmp_path_factory.mktemp('uninterrupted')
    config = write_config(folder, tiny_config, image_folder)
    code, log = train(config, folder / 'work')
    assert code == 0, log[-4000:]
    return config, folder / 'work'


@pytest.mark.parametrize('kill_at, resumed_from', [
    (10, 'iter_8.pth'),  # mid-epoch 2: resumes inside the epoch
    (14, 'epoch_2.pth'),  # early in epoch 3: resumes at the epoch boundary
])
def test_sigkill_then_resume_equals_an_uninterrupted_run(
        uninterrupted, tmp_path, tiny_config, image_folder, kill_at,
        resumed_from):
    _, reference_dir = uninterrupted
    config = write_config(tmp_path / 'killed', tiny_config, image_folder,
                          kill_at=kill_at)
    work_dir = tmp_path / 'work'
    code, log = train(config, work_dir)
    assert code == -signal.SIGKILL, log[-4000:]
    with open(work_dir / 'last_checkpoint') as f:
        assert os.path.basename(f.read().strip()) == resumed_from
    assert not any(name.endswith('.tmp') for name in os.listdir(work_dir))

    # The same config without the kill, resumed from the work directory.
    config = write_config(tmp_path / 'resume', tiny_config, image_folder)
    code, log = train(config, work_dir, '--resume')
    assert code == 0, log[-4000:]
    done = int(resumed_from.split('_')[1].split('.')[0])
    if resumed_from.startswith('iter'):
        assert f'resumed epoch: {done // ITERS_PER_EPOCH}, iter: {done}' in log
        assert (f'at batch {done % ITERS_PER_EPOCH + 1} of {ITERS_PER_EPOCH}'
                in log)
    else:
        assert f'resumed epoch: {done}, iter: {done * ITERS_PER_EPOCH}' in log
    assert 'holds no random generator states' not in log

    expected, resumed = final_weights(reference_dir), final_weights(work_dir)
    assert expected.keys() == resumed.keys()
    different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'
    # The final validation of both runs is the same too.
    assert val_metrics(work_dir)[-1] == val_metrics(reference_dir)[-1]
    # Only the newest mid-epoch checkpoint was kept, and removed at the end.
    assert not [n for n in os.listdir(work_dir) if n.startswith('iter_')]


def test_same_seed_same_config_same_metrics_and_weights(uninterrupted,
                                                         tmp_path):
    config, reference_dir = uninterrupted
    code, log = train(config, tmp_path / 'work')
    assert code == 0, log[-4000:]
    metrics, reference = val_metrics(tmp_path / 'work'), val_metrics(
        reference_dir)
    assert len(metrics) == len(reference) == 3
    assert metrics == reference
    expected, again = final_weights(reference_dir), final_weights(
        tmp_path / 'work')
    assert all(torch.equal(expected[k], again[k]) for k in expected)
