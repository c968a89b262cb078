"""Lossless resume after SIGKILL, and same seed -> same run (tools/train.py, CPU)."""
import json
import os
import signal
import textwrap

import pytest
import torch

from tests.conftest import REPO, cpu_tool_env, run_tool

pytestmark = pytest.mark.long  # run first (conftest.py)

# 24 training images, batch 4: 6 iterations per epoch, 3 epochs. Mid-epoch
# checkpoints every 4 iterations (4, 8, 16; 12 is an epoch end), validation
# (with BN calibration at an unseen size, which draws random crops) after
# every epoch; the calibrated statistics of every validation are saved to
# calibrated_val_<epoch>.pth.
ITERS_PER_EPOCH = 6
KILL_HOOK = '''
import os
import signal

import torch
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


@HOOKS.register_module()
class SaveCalibratedStatistics(Hook):
    def after_val_epoch(self, runner, metrics=None):
        state = runner.model.state_dict()
        torch.save({k: v for k, v in state.items() if '.calibrated.' in k},
                   os.path.join(runner.work_dir,
                                f'calibrated_val_{runner.epoch}.pth'))
'''


def write_config(folder, tiny_config, image_folder, kill_at=None,
                 best_rule='greater', val_interval=1, num_workers=0):
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
            train_cfg = dict(max_epochs=3, val_interval={val_interval})
            param_scheduler = dict(end=3, T_max=3)
            val_cfg = dict(test_sizes=[32, 20])
            custom_hooks = [
                dict(type='PerSizeBNHook', inference_mode='calibrated',
                     calibration_images=8, recalibrate=True),
                dict(type='LosslessResumeHook', interval=4),
                dict(type='SaveCalibratedStatistics'),
                {kill}
            ]
            default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                                 rule='{best_rule}'))
            data_root = '{image_folder}'
            train_dataloader = dict(
                num_workers={num_workers},
                persistent_workers={num_workers > 0},
                dataset=dict(data_root=data_root))
            val_dataloader = dict(dataset=dict(data_root=data_root))
            test_dataloader = dict(dataset=dict(data_root=data_root))
            '''))
    return config


def train(config, work_dir, *args):
    env = cpu_tool_env(PYTHONPATH=os.pathsep.join(
        [os.path.dirname(config), REPO, os.environ.get('PYTHONPATH', '')]))
    return run_tool('train.py', config, '--work-dir', work_dir, *args,
                    env=env, check=False)


def final_weights(work_dir):
    return torch.load(os.path.join(work_dir, 'epoch_3.pth'),
                      weights_only=True)['state_dict']


def calibrated_statistics(work_dir, epoch=3):
    """The BN statistics calibrated at size 20 by the validation after
    ``epoch``; never empty."""
    stats = torch.load(os.path.join(work_dir, f'calibrated_val_{epoch}.pth'),
                       weights_only=True)
    assert 'backbone.bn1.calibrated.20.running_mean' in stats, sorted(stats)
    return stats


def assert_bitwise_equal(expected, actual):
    assert expected.keys() == actual.keys()
    different = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


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


_UNINTERRUPTED = {}


@pytest.fixture(scope='module')
def uninterrupted_runs(tmp_path_factory, tiny_config, image_folder):
    """``get(best_rule)``: the uninterrupted run with that CheckpointHook
    rule (trained on first use)."""
    def get(best_rule='greater'):
        if best_rule not in _UNINTERRUPTED:
            folder = tmp_path_factory.mktemp(f'uninterrupted_{best_rule}')
            config = write_config(folder, tiny_config, image_folder,
                                  best_rule=best_rule)
            code, log = train(config, folder / 'work')
            assert code == 0, log[-4000:]
            _UNINTERRUPTED[best_rule] = config, folder / 'work'
        return _UNINTERRUPTED[best_rule]
    yield get
    _UNINTERRUPTED.clear()


@pytest.fixture(scope='module')
def uninterrupted(uninterrupted_runs):
    return uninterrupted_runs('greater')


# mmengine saves the epoch checkpoint before validation and saves it again
# after validation only when the best score improves; with both rules, one
# of the two runs resumes from an epoch_2.pth written after validation 2 and
# the other from one written before it (which, before calibrated statistics
# were dropped from training checkpoints, carried validation 1's).
@pytest.mark.parametrize('kill_at, resumed_from, best_rule', [
    (10, 'iter_8.pth', 'greater'),  # mid-epoch 2: resumes inside the epoch
    (14, 'epoch_2.pth', 'greater'),  # early in epoch 3: at the epoch boundary
    (14, 'epoch_2.pth', 'less'),
])
def test_sigkill_then_resume_equals_an_uninterrupted_run(
        uninterrupted_runs, tmp_path, tiny_config, image_folder, kill_at,
        resumed_from, best_rule):
    _, reference_dir = uninterrupted_runs(best_rule)
    config = write_config(tmp_path / 'killed', tiny_config, image_folder,
                          kill_at=kill_at, best_rule=best_rule)
    work_dir = tmp_path / 'work'
    code, log = train(config, work_dir)
    assert code == -signal.SIGKILL, log[-4000:]
    with open(work_dir / 'last_checkpoint') as f:
        assert os.path.basename(f.read().strip()) == resumed_from
    assert not any(name.endswith('.tmp') for name in os.listdir(work_dir))

    # The same config without the kill, resumed from the work directory.
    config = write_config(tmp_path / 'resume', tiny_config, image_folder,
                          best_rule=best_rule)
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

    # Weights, buffers and, when the epoch checkpoint was saved again after
    # the final validation, its calibrated statistics.
    assert_bitwise_equal(final_weights(reference_dir), final_weights(work_dir))
    # The statistics calibrated by the final validation, and its metrics.
    assert_bitwise_equal(calibrated_statistics(reference_dir),
                         calibrated_statistics(work_dir))
    # Every validation, the killed process's and the resumed one's, as the
    # uninterrupted run's (another process with the same seed and config:
    # the same run).
    assert len(val_metrics(reference_dir)) == 3
    assert val_metrics(work_dir) == val_metrics(reference_dir)
    # Only the newest mid-epoch checkpoint was kept, and removed at the end.
    assert not [n for n in os.listdir(work_dir) if n.startswith('iter_')]


@pytest.mark.parametrize('num_workers', [0, 2])
def test_calibration_does_not_depend_on_earlier_validations(
        uninterrupted, tmp_path, tiny_config, image_folder, num_workers):
    """Validating only after the last epoch calibrates as validating after
    every epoch does (fresh processes; with and without dataloader workers,
    which training and calibration seed separately)."""
    _, reference_dir = uninterrupted
    folder = tmp_path / f'workers{num_workers}'
    every_epoch = write_config(folder / 'a', tiny_config, image_folder,
                               num_workers=num_workers)
    last_epoch_only = write_config(folder / 'b', tiny_config, image_folder,
                                   val_interval=3, num_workers=num_workers)
    for config, work in ((every_epoch, folder / 'work_a'),
                         (last_epoch_only, folder / 'work_b')):
        if num_workers == 0 and config == every_epoch:
            continue  # that is the `uninterrupted` run
        code, log = train(config, work)
        assert code == 0, log[-4000:]
    assert not os.path.exists(folder / 'work_b' / 'calibrated_val_1.pth')
    reference = reference_dir if num_workers == 0 else folder / 'work_a'
    assert_bitwise_equal(calibrated_statistics(reference),
                         calibrated_statistics(folder / 'work_b'))
    # The epoch checkpoint, saved again after its (first, so best)
    # validation, carries exactly the statistics calibrated for its weights.
    saved = final_weights(folder / 'work_b')
    assert_bitwise_equal(
        {k: v for k, v in saved.items() if '.calibrated.' in k},
        calibrated_statistics(folder / 'work_b'))
