"""Checkpoint-loading policy: every load stays ``weights_only``; our own checkpoints satisfy it.

torch >= 2.6 loads with ``weights_only=True`` by default: the unpickler builds only tensors,
primitive containers and explicitly allow-listed types, so a crafted file cannot run code. mmengine
0.10.7 writes training checkpoints that this unpickler refuses: its ``message_hub`` holds
``HistoryBuffer`` objects (numpy arrays inside) whose pickled state includes function references
(rebuilt through ``builtins.getattr``, which would make unpickling unsafe to allow).

The policy, applied once when :mod:`san_mm` is imported:

1. Loading never falls back to ``weights_only=False``. Checkpoints from anywhere (ours, mmpretrain's
   model zoo, other people's) are read by the restricted unpickler only.
2. A small allowlist of *data* types is added: mmengine's ``HistoryBuffer`` and the numpy array /
   dtype / scalar constructors. Rebuilding them sets attributes and fills buffers; it calls no code
   named by the file (an object array's elements go through the same allowlist).
3. ``HistoryBuffer`` is written without its statistics-method table (it holds functions, not data);
   the default methods are re-registered when it is read. So every checkpoint a run with san_mm
   writes (training, ``--resume``, ``load_from``, test) loads under ``weights_only=True``.
4. A checkpoint that still needs unsafe globals (e.g. a training checkpoint written by plain
   mmengine) is refused with a message naming the file and the offending globals. If, and only if,
   the user trusts its origin, ``python tools/convert_trusted_checkpoint.py SRC DST`` rewrites it
   into the safe format; nothing does that implicitly.
"""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'apply_checkpoint_policy', 'load_from_local_weights_only',
    'convert_trusted_checkpoint', 'UnsafeCheckpointError', 'SAFE_GLOBALS'
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs globals outside the weights-only allowlist."""


def _numpy_safe_globals():
    core = getattr(np, '_core', None) or np.core  # numpy 2 / numpy 1
    multiarray = core.multiarray
    types = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # numpy 2 pickles dtypes through their concrete classes (np.dtypes.*DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes)
                  if name.endswith('DType') and name != 'StringDType']
    return types


SAFE_GLOBALS = [HistoryBuffer] + _numpy_safe_globals()


def _history_buffer_getstate(self) -> dict:
    # Data only: the statistics-method table is class-level code, not state.
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    state.pop('_statistics_methods', None)
    return state


def _history_buffer_setstate(self, state: dict) -> None:
    state = dict(state)
    methods = state.pop('statistics_methods', {})  # older mmengine files
    self.__dict__.update(state)
    self._set_default_statistics()
    self._statistics_methods.update(methods)


def load_from_local_weights_only(filename, map_location=None):
    """mmengine's local checkpoint loader, always ``weights_only=True``, with
    a message for people when a file is refused."""
    import os.path as osp
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} can not be found; check the path given '
            'to load_from, --resume, the checkpoint argument or init_cfg')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
                filename)
        except Exception:  # not a zip checkpoint at all
            unsafe = []
        if not unsafe:
            raise UnsafeCheckpointError(
                f'cannot read checkpoint {filename}: it is truncated, '
                f'corrupt or not a torch checkpoint ({error}); download or '
                'save it again') from None
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {filename}: it needs the globals '
            f'{unsafe}, which could run code while unpickling, and san_mm '
            'loads checkpoints with weights_only=True. If you trust where '
            'the file comes from, rewrite it once with `python '
            'tools/convert_trusted_checkpoint.py SRC DST` and load DST.'
        ) from None
    except (RuntimeError, EOFError) as error:
        raise UnsafeCheckpointError(
            f'cannot read checkpoint {filename}: it is truncated, corrupt or '
            f'not a torch checkpoint ({error}); download or save it again'
        ) from None


def convert_trusted_checkpoint(src: str, dst: str) -> dict:
    """Rewrite a checkpoint you trust into the weights-only-loadable format.

    ``src`` is unpickled with ``weights_only=False`` (it can run code: only
    call this on files whose origin you trust), then saved to ``dst`` with the
    policy applied. The result is verified to load with ``weights_only=True``.

    Returns:
        dict: The checkpoint as written.
    """
    apply_checkpoint_policy()
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    torch.save(checkpoint, dst)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(dst)
    remaining = [name for name in unsafe
                 if name not in {_qualname(t) for t in SAFE_GLOBALS}]
    if remaining:
        # Keep only what inference and fine-tuning need.
        checkpoint = {k: checkpoint[k] for k in ('state_dict', 'meta')
                      if k in checkpoint}
        torch.save(checkpoint, dst)
    torch.load(dst, map_location='cpu', weights_only=True)
    return checkpoint


def _qualname(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


_applied = False


def apply_checkpoint_policy() -> None:
    """Apply the policy above (idempotent)."""
    global _applied
    if _applied:
        return
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    # '' is mmengine's fallback scheme for local paths.
    CheckpointLoader.register_scheme(prefixes='',
                                     loader=load_from_local_weights_only,
                                     force=True)
    _applied = True


apply_checkpoint_policy()
