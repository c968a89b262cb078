"""Capture and restore every random number generator a training process draws from.

mmengine seeds Python's ``random``, numpy's global generator and torch (CPU and CUDA) once at
start-up and never saves them, so a resumed run draws different crops, flips and sampled sizes
than the run it continues. These helpers make the generators' states a plain-data dict that
fits in a checkpoint (loadable with ``weights_only=True``: ints, floats, strings, numpy arrays,
uint8 tensors).
"""
import contextlib
import random
from typing import Dict, Iterator, List

import numpy as np
import torch


def get_random_states() -> Dict:
    """The states of ``random``, numpy's global generator, torch's CPU
    generator and, when CUDA is initialised, every CUDA device's generator."""
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    states = dict(
        python=random.getstate(),
        numpy=dict(kind=kind, key=key, pos=pos, has_gauss=has_gauss,
                   cached_gaussian=cached_gaussian),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: Dict) -> None:
    """Restore generators from :func:`get_random_states`'s output.

    Raises:
        ValueError: if ``states`` misses a generator or holds CUDA states for
            another number of devices than this process sees.
    """
    missing = {'python', 'numpy', 'torch'} - set(states)
    if missing:
        raise ValueError(f'random states miss {sorted(missing)}; expected the '
                         'output of get_random_states()')
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    numpy_state = states['numpy']
    np.random.set_state((numpy_state['kind'], numpy_state['key'],
                         numpy_state['pos'], numpy_state['has_gauss'],
                         numpy_state['cached_gaussian']))
    torch.set_rng_state(states['torch'].cpu())
    if 'cuda' in states and torch.cuda.is_available():
        if len(states['cuda']) != torch.cuda.device_count():
            raise ValueError(
                f'random states hold {len(states["cuda"])} CUDA generators, '
                f'this process sees {torch.cuda.device_count()} devices; '
                'resume with the CUDA_VISIBLE_DEVICES of the interrupted run')
        torch.cuda.set_rng_state_all([s.cpu() for s in states['cuda']])


# States that open preserved_random_states() blocks will restore, outermost first.
_PRESERVED: List[Dict] = []


@contextlib.contextmanager
def preserved_random_states() -> Iterator[None]:
    """Run the block without moving any generator: what it draws does not
    change what the code after it draws (e.g. validation inside training)."""
    states = get_random_states()
    _PRESERVED.append(states)
    try:
        yield
    finally:
        _PRESERVED.pop()
        set_random_states(states)


def get_resumable_random_states() -> Dict:
    """The states the code after every open :func:`preserved_random_states`
    block continues from: the current ones outside such blocks, those the
    outermost block will restore inside one (mmengine's CheckpointHook saves
    the epoch checkpoint again during validation when the best score
    improves; that checkpoint must hold the training stream's states)."""
    return _PRESERVED[0] if _PRESERVED else get_random_states()


def derived_seed(*values: int) -> int:
    """A 32-bit seed that depends on ``values`` (non-negative ints) only,
    e.g. ``derived_seed(run_seed, iteration, size)``: well mixed, so nearby
    values give unrelated streams, and the same on every machine."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_random_states(seed: int) -> Iterator[None]:
    """Run the block with every generator (``random``, numpy, torch CPU and
    CUDA) seeded from ``seed``, and restore their previous states after it:
    what the block draws depends on ``seed`` alone, and the code after it
    draws as if the block had not run."""
    with preserved_random_states():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds every CUDA device
        yield
