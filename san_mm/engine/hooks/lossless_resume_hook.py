"""Checkpoints that let a killed run continue as if it had never stopped."""
import logging
import os
import os.path as osp
from typing import List, Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from san_mm.registry import HOOKS
from san_mm.utils import get_resumable_random_states

RANDOM_STATES_KEY = 'random_states'
LAST_MID_EPOCH_KEY = 'lossless_resume/last_mid_epoch_checkpoint'


@HOOKS.register_module()
class LosslessResumeHook(Hook):
    """Saves every process's random generator states in each checkpoint and,
    optionally, writes a checkpoint every ``interval`` iterations inside an
    epoch, so ``--resume`` after a crash or ``SIGKILL`` loses at most
    ``interval`` iterations and then repeats exactly what the lost run did.

    mmengine saves the model, optimizer, schedulers and counters, but not the
    states of ``random``, numpy and torch, so a resumed run draws other
    crops, flips and sampled sizes; and its ``EpochBasedTrainLoop`` restarts
    an interrupted epoch from its first batch. This hook stores the states
    under ``checkpoint['random_states']`` (one entry per rank) and hands them
    to :class:`~san_mm.engine.runners.ResumableEpochBasedTrainLoop`, which
    skips the batches the checkpoint already trained on and restores the
    states right before the next batch. With ``num_workers=0`` the resumed
    run is bitwise identical on CPU (tested); with worker processes the
    images and their order are the same, but the workers' augmentation
    draws restart from their seeds.

    Mid-epoch checkpoints are named ``iter_<N>.pth``, written to a temporary
    file and renamed (a kill while writing leaves the previous checkpoint
    intact), pointed to by ``work_dir/last_checkpoint`` (what ``--resume``
    reads), and only the newest is kept; the epoch checkpoints of
    mmengine's ``CheckpointHook`` are left to it. The last one is removed
    when training ends.

    Args:
        interval (int, optional): Iterations between mid-epoch checkpoints;
            None writes none (random states still go into every checkpoint).
    """
    # Before CheckpointHook (VERY_LOW) in after_train_iter, so the states
    # of every rank are gathered before a checkpoint is written.
    priority = 'LOW'

    def __init__(self, interval: Optional[int] = None):
        if interval is not None and (not isinstance(interval, int)
                                     or interval < 1):
            raise ValueError(
                'LosslessResumeHook: interval must be a positive int (save '
                'a resumable checkpoint every `interval` iterations) or None '
                f'(no mid-epoch checkpoints), got {interval!r}; fix it in '
                'custom_hooks')
        self.interval = interval
        self.loaded_random_states: Optional[List[dict]] = None
        # Every rank's states, gathered after the last training iteration
        # (valid until the next one starts) in multi-process runs.
        self._gathered: Optional[List[dict]] = None

    # ------------------------------------------------- states in checkpoints
    def before_train_iter(self, runner, batch_idx: int, data_batch=None):
        self._gathered = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        end_of_epoch = batch_idx + 1 == len(runner.train_dataloader)
        mid_epoch_save = (self.interval is not None and not end_of_epoch
                          and self.every_n_train_iters(runner, self.interval))
        if get_world_size() > 1 and (end_of_epoch or mid_epoch_save):
            # Collective: every rank takes part, the main one saves.
            self._gathered = all_gather_object(get_resumable_random_states())
        if mid_epoch_save:
            self._save_mid_epoch_checkpoint(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_world_size() == 1:
            checkpoint[RANDOM_STATES_KEY] = [get_resumable_random_states()]
        elif self._gathered is not None:
            checkpoint[RANDOM_STATES_KEY] = self._gathered
        # Otherwise the checkpoint was written at a step where the states of
        # the other ranks were not gathered: without states, resuming from it
        # is correct but not bitwise (the loop says so).

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Kept for the train loop, which uses them only when it resumes
        # (a load_from checkpoint starts a new run with fresh generators).
        self.loaded_random_states = checkpoint.get(RANDOM_STATES_KEY)

    def random_states_for_this_rank(self) -> Optional[dict]:
        """The loaded states of this process, or None (with a warning) if
        the checkpoint has none or was saved by another number of
        processes."""
        states = self.loaded_random_states
        if not states:
            print_log('the checkpoint holds no random generator states (saved '
                      'without LosslessResumeHook): training continues, but '
                      'not exactly as the interrupted run would have (add '
                      'LosslessResumeHook to custom_hooks for exact resumes)',
                      logger='current', level=logging.WARNING)
            return None
        if len(states) != get_world_size():
            print_log(f'the checkpoint holds random states of {len(states)} '
                      f'processes, this run has {get_world_size()}: training '
                      'continues, but not exactly as the interrupted run would '
                      f'have (resume with {len(states)} processes for that)',
                      logger='current', level=logging.WARNING)
            return None
        return states[get_rank()]

    # ------------------------------------------------ mid-epoch checkpoints
    def _save_mid_epoch_checkpoint(self, runner) -> None:
        path = osp.join(runner.work_dir, f'iter_{runner.iter + 1}.pth')
        # The previous one is found through the message hub, which is saved
        # in (and resumed from) every checkpoint.
        previous = runner.message_hub.get_info(LAST_MID_EPOCH_KEY)
        runner.message_hub.update_info(LAST_MID_EPOCH_KEY, path)
        runner.save_checkpoint(runner.work_dir, osp.basename(path) + '.tmp',
                               by_epoch=False)
        if not is_main_process():
            return
        os.replace(path + '.tmp', path)
        _write_atomically(osp.join(runner.work_dir, 'last_checkpoint'), path)
        if previous and previous != path and osp.isfile(previous):
            os.remove(previous)
        runner.logger.info(f'saved mid-epoch checkpoint {path}')

    def after_train(self, runner) -> None:
        path = runner.message_hub.get_info(LAST_MID_EPOCH_KEY)
        if not (is_main_process() and path and osp.isfile(path)):
            return
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        with open(pointer) as f:
            still_latest = f.read().strip() == path
        if not still_latest:  # an epoch checkpoint came after it
            os.remove(path)


def _write_atomically(path: str, text: str) -> None:
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)
