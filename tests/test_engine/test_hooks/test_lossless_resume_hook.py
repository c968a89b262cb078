import pytest

from san_mm.engine.hooks import LosslessResumeHook
from san_mm.utils import get_random_states


@pytest.mark.parametrize('interval', [0, -5, 2.5])
def test_resume_hook_interval_must_be_positive_int(interval):
    with pytest.raises(ValueError, match='interval must be a positive int'):
        LosslessResumeHook(interval=interval)


def test_resume_without_saved_states_warns_and_continues():
    hook = LosslessResumeHook()
    hook.after_load_checkpoint(None, {'state_dict': {}})
    assert hook.random_states_for_this_rank() is None  # a warning, no error
    hook.after_load_checkpoint(None, {'random_states': [get_random_states()] * 2})
    assert hook.random_states_for_this_rank() is None  # saved by 2 processes
    states = get_random_states()
    hook.after_load_checkpoint(None, {'random_states': [states]})
    assert hook.random_states_for_this_rank() is states
