"""The checkpoint-loading policy of san_mm.checkpoint."""
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import Dataset

from san_mm.checkpoint import UnsafeCheckpointError
from tests.conftest import run_tool


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)))


def run(work_dir, max_epochs, resume=False):
    runner = Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=4,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs), resume=resume,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        default_scope='mmengine',
        randomness=dict(seed=0), experiment_name=f'exp{max_epochs}{resume}')
    runner.train()
    return runner


def test_own_training_checkpoint_loads_weights_only(tmp_path):
    run(tmp_path, 1)
    path = tmp_path / 'epoch_1.pth'
    checkpoint = torch.load(path, weights_only=True)  # the strict default
    assert {'state_dict', 'message_hub', 'optimizer', 'meta'} <= set(checkpoint)
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() > 0
    model = ToyModel()
    load_checkpoint(model, str(path))  # the load_from / test path
    # resume goes through the same loader and continues the run
    runner = run(tmp_path, 2, resume=True)
    assert runner.epoch == 2


class Exploit:
    """Unpickling this creates a file: what a poisoned checkpoint would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, 'w'))


def test_crafted_checkpoint_cannot_run_code(tmp_path):
    target = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': Exploit(str(target))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'evil.pth.*io\.open'):
        load_checkpoint(ToyModel(), str(path))
    assert not target.exists()


def test_corrupt_checkpoint_is_reported(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': ToyModel().state_dict()}, good)
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UnsafeCheckpointError, match='truncated.pth.*corrupt'):
        load_checkpoint(ToyModel(), str(bad))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint(ToyModel(), str(tmp_path / 'missing.pth'))


PLAIN_MMENGINE_SAVE = """
import sys, torch
from mmengine.logging import MessageHub
hub = MessageHub.get_instance('plain')
hub.update_scalar('train/loss', 1.5)
torch.save({'state_dict': {'linear.weight': torch.zeros(2, 2),
                           'linear.bias': torch.zeros(2)},
            'message_hub': hub.state_dict()}, sys.argv[1])
"""


def test_plain_mmengine_checkpoint_refused_then_converted(tmp_path):
    # Written by mmengine without san_mm imported (no policy applied).
    plain = tmp_path / 'plain.pth'
    subprocess.run([sys.executable, '-c', PLAIN_MMENGINE_SAVE, str(plain)],
                   check=True)
    with pytest.raises(UnsafeCheckpointError, match='getattr.*convert_trusted'):
        load_checkpoint(ToyModel(), str(plain))
    safe = tmp_path / 'safe.pth'
    run_tool('convert_trusted_checkpoint.py', plain, safe)
    checkpoint = torch.load(safe, weights_only=True)
    assert checkpoint['message_hub']['log_scalars']['train/loss'].current() == 1.5
    load_checkpoint(ToyModel(), str(safe))


def test_checkpoint_pickles_through_plain_pickle_too():
    buffer = HistoryBuffer()
    buffer.update(2.0)
    copy = pickle.loads(pickle.dumps(buffer))
    assert copy.mean() == 2.0 and copy.statistics('max') == 2.0
