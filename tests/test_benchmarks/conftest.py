"""The benchmark scripts are not a package: each test module loads the
script it tests from benchmarks/ by path."""
import importlib.util
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load(name):
    """``benchmarks/<name>.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'benchmarks', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
