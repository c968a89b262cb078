import io
import random

import numpy as np
import pytest
import torch

from san_mm.utils import (get_random_states, get_resumable_random_states,
                          preserved_random_states, set_random_states)


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_states_survive_a_weights_only_checkpoint_and_replay_draws():
    states = get_random_states()
    expected = draw()
    buffer = io.BytesIO()
    torch.save({'random_states': [states]}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)['random_states'][0]
    draw()
    set_random_states(loaded)
    assert draw() == expected


def test_preserved_block_does_not_move_the_generators():
    states = get_random_states()
    expected = draw()
    set_random_states(states)
    with preserved_random_states():
        draw()
        # A checkpoint written inside the block gets the outside stream.
        inside = get_resumable_random_states()
        with preserved_random_states():
            assert get_resumable_random_states() is inside
    assert draw() == expected
    set_random_states(inside)
    assert draw() == expected


def test_incomplete_states_are_refused():
    states = get_random_states()
    del states['numpy']
    with pytest.raises(ValueError, match=r"miss \['numpy'\]"):
        set_random_states(states)
