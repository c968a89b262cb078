"""The benchmark scripts are not a package: each test module loads the
script it tests from benchmarks/ by path."""
import pytest

from tests.conftest import load_script


def _load(name):
    """``benchmarks/<name>.py`` as a fresh module."""
    return load_script(f'benchmarks/{name}.py')


@pytest.fixture(scope='session')
def load_benchmark():
    """The loader itself, for a test that patches its own fresh copy."""
    return _load


@pytest.fixture(scope='module')
def speed():
    return _load('speed')


@pytest.fixture(scope='module')
def train_iteration():
    return _load('train_iteration')
