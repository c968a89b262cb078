"""An epoch-based train loop that resumes inside an epoch, exactly where it stopped."""
from typing import Iterator, Optional

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, Sampler

from san_mm.registry import LOOPS
from san_mm.utils import set_random_states
from ..compile import prepare_compile
from ..hooks.lossless_resume_hook import LosslessResumeHook
from ..utils import unwrap_model


class _SkipFirstBatches(Sampler):
    """A batch sampler that drops the first ``skip`` batches of ``batches``
    without loading them (the sampler's order is fixed by its seed and
    epoch, so the remaining batches are the ones the lost run would have
    seen)."""

    def __init__(self, batches, skip: int):
        self.batches = batches
        self.skip = skip

    def __iter__(self) -> Iterator:
        iterator = iter(self.batches)
        for _ in range(self.skip):
            next(iterator)
        yield from iterator

    def __len__(self) -> int:
        return len(self.batches) - self.skip


def _skipping_dataloader(loader: DataLoader, skip: int) -> DataLoader:
    """``loader`` without its first ``skip`` batches, for one epoch."""
    extra = {}
    if loader.num_workers > 0:
        extra = dict(prefetch_factor=loader.prefetch_factor,
                     multiprocessing_context=loader.multiprocessing_context)
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipFirstBatches(loader.batch_sampler, skip),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        persistent_workers=False,  # used for the rest of one epoch only
        pin_memory_device=loader.pin_memory_device,
        **extra)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that continues an interrupted epoch.

    mmengine's loop, resumed from a checkpoint written in the middle of an
    epoch, starts that epoch again from its first batch (training on those
    batches twice). This loop skips the batches the checkpoint has already
    trained on, without loading them, keeps the batch indices the logs and
    hooks see, and restores the random generator states saved by
    :class:`~san_mm.engine.hooks.LosslessResumeHook` right before the first
    new batch, so the rest of the run repeats what the interrupted one did.
    A :class:`LosslessResumeHook` without mid-epoch checkpoints is
    registered if the config has none. Arguments are those of
    ``EpochBasedTrainLoop``::

        train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=120)
        custom_hooks = [dict(type='LosslessResumeHook', interval=2000)]
    """

    def __init__(self, runner, *args, **kwargs):
        super().__init__(runner, *args, **kwargs)
        if self._resume_hook() is None:
            runner.register_hook(LosslessResumeHook())
        self._resume_pending = True
        # Built before mmengine would compile train_step: with `compile`
        # in the config, the backbone is compiled instead (engine/compile).
        backbone = getattr(unwrap_model(runner), 'backbone', None)
        prepare_compile(runner, len(getattr(backbone, 'train_sizes', ())))

    def _resume_hook(self) -> Optional[LosslessResumeHook]:
        return next((hook for hook in self.runner.hooks
                     if isinstance(hook, LosslessResumeHook)), None)

    def run(self):
        if self._iter > 0:
            # mmengine resets the global seed to the checkpoint's on resume,
            # but the sampler was built before with this run's seed.
            sampler = getattr(self.dataloader, 'sampler', None)
            if hasattr(sampler, 'seed') and sampler.seed != self.runner.seed:
                sampler.seed = self.runner.seed
        return super().run()

    def run_epoch(self) -> None:
        resuming, self._resume_pending = (self._resume_pending
                                          and self._iter > 0), False
        if not resuming:
            return super().run_epoch()
        done = self._iter - self._epoch * len(self.dataloader)
        if not 0 <= done < len(self.dataloader):
            raise ValueError(
                f'cannot resume at iteration {self._iter} of epoch '
                f'{self._epoch}: epochs have {len(self.dataloader)} batches '
                'here, so the checkpoint was written with another dataset, '
                'batch size or number of processes: resume with the settings '
                'of the interrupted run, or start a new run from its weights '
                'with load_from instead of --resume')
        states = self._resume_hook().random_states_for_this_rank()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        if done:
            print_log(f'resuming epoch {self._epoch + 1} at batch {done + 1} '
                      f'of {len(self.dataloader)} (the first {done} are '
                      'skipped without loading)', logger='current')
        loader = _skipping_dataloader(self.dataloader, done) \
            if done else self.dataloader
        # Creating the iterator draws a seed from torch's generator. In the
        # interrupted run, mid-epoch, that happened before the checkpoint
        # was written (restore after it); at an epoch boundary it happened
        # after (restore before it).
        if states is not None and not done:
            set_random_states(states)
        batches = iter(loader)
        if states is not None and done:
            set_random_states(states)
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
