"""tools/dist_train.sh on 2 CPU processes (torchrun, gloo) and the CPU distributed set-up."""
import os
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from san_mm.apis.cli import finish_distributed, setup_distributed
from tests.conftest import REPO, cpu_tool_env
from tests.test_tools.test_train_test_resume import data_root_options

pytestmark = pytest.mark.long  # run first (conftest.py)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist_train(config, work_dir, *options):
    env = cpu_tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    out = subprocess.run(
        ['bash', os.path.join(REPO, 'tools', 'dist_train.sh'), config,
         '2', '--work-dir', str(work_dir), '--cfg-options', *options],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def test_dist_train_sh_on_two_cpu_processes(image_folder, tmp_path):
    # The tiny config in float64 (tests/data/float64_san.py), so that the
    # joint and per-size runs below agree up to float64 rounding.
    config = os.path.join(REPO, 'tests', 'data',
                          'tiny_san_resnet18_float64.py')
    # 16 images, batch 4 per process, 2 processes: 2 iterations, 1 epoch.
    options = ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16',
               *data_root_options(image_folder)]
    log = dist_train(config, tmp_path / 'joint', *options)
    assert 'Distributed training: True' in log
    assert 'Epoch(train) [1][2/2]' in log
    assert 'accuracy/top1@mean' in log
    checkpoint = torch.load(tmp_path / 'joint' / 'epoch_1.pth',
                            weights_only=True)
    assert checkpoint['meta']['iter'] == 2
    # Every rank's random generators are saved (for an exact resume).
    states = checkpoint['random_states']
    assert len(states) == 2
    assert all(set(s) >= {'python', 'numpy', 'torch'} for s in states)

    # One backward per size under DDP (SANDistributedDataParallel averages
    # the gradients itself): the same training, up to rounding. The terms are
    # added in different orders; after two steps, through BN over as few as 4
    # values, that gave per-tensor relative errors up to 1.5e-4 in float32
    # (near-zero BN biases; 5 seeds x {1, 2} threads), but <= 1.2e-12 in
    # float64 (5 seeds). Bound 1e-9 (800x); summing instead of averaging the
    # gradients over the processes gives errors up to 5 (>= 2e-4 on every
    # tensor), not averaging them at all up to 8.
    dist_train(config, tmp_path / 'per_size', 'model.backward_per_size=True',
               *options)
    per_size = torch.load(tmp_path / 'per_size' / 'epoch_1.pth',
                          weights_only=True)['state_dict']
    for name, expected in checkpoint['state_dict'].items():
        if expected.is_floating_point():
            assert expected.dtype == torch.float64, name
            error = ((per_size[name] - expected).norm() /
                     expected.norm().clamp_min(1e-300))
            assert error < 1e-9, f'{name}: relative error {error:.2e}'
        else:
            assert torch.equal(per_size[name], expected), name


def gloo_threads():
    names = []
    for tid in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{tid}/comm') as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return [n for n in names if n.startswith(('pt_gloo', 'gloo'))]


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'),
                    reason='lists the threads through /proc (Linux)')
def test_finish_distributed_joins_the_gloo_threads():
    # The tools' runs above ended in SIGABRT ("terminate called without an
    # active exception") intermittently, when a gloo worker thread
    # released a finished collective's tensors while the interpreter shut
    # down; finish_distributed joins those threads first, even though, as
    # with the runner's DDP wrapper, a reference cycle holds the group.
    assert not torch.distributed.is_initialized()
    torch.distributed.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0,
        world_size=1)
    try:
        holder = {'group': torch.distributed.group.WORLD}
        holder['self'] = holder
        objects = [dict(accuracy=1.0)]
        torch.distributed.broadcast_object_list(objects, src=0)
        # (gloo's threads name themselves once started: a worker that ran the
        # broadcast has)
        assert gloo_threads()
        del holder, objects
        finish_distributed()
        assert not torch.distributed.is_initialized()
        assert gloo_threads() == []
        finish_distributed()  # without a process group: nothing to do
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def test_cpu_distributed_refuses_sync_bn_and_other_launchers(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='pytorch', sync_bn='torch'))
    with pytest.raises(ValueError, match="sync_bn='torch' needs CUDA"):
        setup_distributed(cfg)
    with pytest.raises(ValueError, match='--launcher slurm needs CUDA'):
        setup_distributed(Config(dict(launcher='slurm')))
    untouched = Config(dict(launcher='none'))
    setup_distributed(untouched)
    assert 'model_wrapper_cfg' not in untouched


def test_distributed_runs_wrap_in_san_ddp_unless_configured(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config(dict(launcher='slurm'))
    setup_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type='SANDistributedDataParallel',
                                         broadcast_buffers=False,
                                         find_unused_parameters=False)
    own = dict(type='MMFullyShardedDataParallel')
    cfg = Config(dict(launcher='pytorch', model_wrapper_cfg=own))
    setup_distributed(cfg)
    assert cfg.model_wrapper_cfg == own


def test_distributed_runs_refuse_the_cuda_graph_step():
    cfg = Config(dict(launcher='pytorch', model=dict(cuda_graph_step=True)))
    with pytest.raises(ValueError, match='cuda_graph_step=True.*--launcher '
                       'pytorch'):
        setup_distributed(cfg)
