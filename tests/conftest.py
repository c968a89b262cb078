import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import san_mm  # noqa: F401  (registers modules, applies the checkpoint policy)

# One thread per test process: the tests' tiny tensors gain nothing from a second thread, and
# with two test processes on two cores (make test: pytest -n 2) a second thread each would
# oversubscribe the cores, which stalls OpenMP's waiting threads.
torch.set_num_threads(1)


def _remember_config_formatting():
    """mmengine formats a config's text with yapf whenever it logs or saves
    it (every checkpoint holds ``cfg.pretty_text``), a large share of a tiny
    training run's time. The formatted text is a function of the text and the
    style alone, so this process and the tools it forks (:func:`run_tool`)
    format each text once."""
    import mmengine.config.config as config_module
    format_code, formatted = config_module.FormatCode, {}

    def remembered(text, style_config=None, **kwargs):
        key = (text, repr(style_config), repr(sorted(kwargs.items())))
        if key not in formatted:
            formatted[key] = format_code(text, style_config=style_config, **kwargs)
        return formatted[key]

    config_module.FormatCode = remembered


_remember_config_formatting()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('red', 'green', 'blue')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'long: a file of tests that runs for tens of seconds (run first)')


def pytest_collection_modifyitems(items):
    """The ``long`` files first: ``make test``'s two processes take whole
    files in collection order, so a long file collected last would leave the
    other process idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker('long') is None)


def load_script(path):
    """``REPO/path`` (a script in tools/ or benchmarks/, which are not
    packages) as a fresh module."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_tool_env(**variables):
    """The environment for a tool a test runs in a subprocess
    (``tools/train.py``, ``test.py``...): this one plus ``variables``, with
    no GPU visible, so the tool computes on the CPU on every machine. The
    tests compare its results bitwise with another run's or with values
    computed here on the CPU; on a GPU, TF32 convolutions and atomic
    reductions would change the last bits. One thread, as this process
    (see the top of this file)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1')
    env.update(variables)
    return env


@pytest.fixture
def runner_on_cpu(monkeypatch):
    """An mmengine ``Runner`` built in this process puts its model on the CPU
    on every machine, for the reason of :func:`cpu_tool_env` (the test
    compares its results bitwise with another run's). mmengine picks the
    device once, at import (``mmengine.device.utils.DEVICE``), and the runner
    moves the model there."""
    import mmengine.device.utils
    monkeypatch.setattr(mmengine.device.utils, 'DEVICE', 'cpu')


def run_tool(tool, *args, env=None, check=True):
    """Run ``tools/<tool>`` with ``args`` in a process of its own from the
    repository root, on the CPU unless ``env`` says otherwise
    (:func:`cpu_tool_env`).

    Without CUDA on the machine the process is a fork of this test process
    that runs the tool as ``python tools/<tool> args`` would (as
    ``__main__``, with ``env``, its own stdout/stderr, logging and mmengine
    instances), its imports already done: an interpreter's start and
    torch's import cost seconds per run. On a machine with CUDA (which a
    fork cannot use) it starts a new interpreter. What only a new
    interpreter shows (a tool's own imports, warnings at import) is checked
    by the demo's test: its printed one-liner runs in bash as printed, and
    every tool imports san_mm first.

    Returns:
        tuple: ``(returncode, log)``, the log being stdout then stderr (one
        stream, interleaved, when forked). With ``check`` a non-zero return
        code fails the test, showing the end of the log.
    """
    path = os.path.join(REPO, 'tools', tool)
    args = [str(a) for a in args]
    env = env or cpu_tool_env()
    if torch.cuda.is_available():
        out = subprocess.run([sys.executable, path, *args], capture_output=True,
                             text=True, cwd=REPO, env=env)
        code, log = out.returncode, out.stdout + out.stderr
    else:
        code, log = _run_forked(path, args, env)
    if check:
        assert code == 0, log[-4000:]
    return code, log


def _run_forked(path, args, env):
    """``python path args`` in a forked child: ``(returncode, log)``, the
    return code negative for a signal, as :mod:`subprocess` reports it."""
    import logging
    import runpy
    import tempfile
    import traceback

    from mmengine.utils import ManagerMixin
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                sys.stdout = open(1, 'w', buffering=1, closefd=False)
                sys.stderr = open(2, 'w', buffering=1, closefd=False)
                logging.root.handlers.clear()  # pytest's capture
                # mmengine's loggers, message hubs, visualizers and scope
                # start empty, as in a new interpreter
                classes = [ManagerMixin]
                while classes:
                    cls = classes.pop()
                    classes += cls.__subclasses__()
                    if '_instance_dict' in vars(cls):
                        cls._instance_dict.clear()
                os.environ.clear()
                os.environ.update(env)
                sys.path[:0] = [os.path.dirname(path)] + [
                    p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
                os.chdir(REPO)
                sys.argv = [path, *args]
                runpy.run_path(path, run_name='__main__')
                code = 0
            except SystemExit as exit:
                code = exit_code(exit)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        log.seek(0)
        return (os.waitstatus_to_exitcode(status),
                log.read().decode(errors='replace'))


def exit_code(exit):
    """The status a Python process ends with on ``exit``: ``sys.exit()`` 0,
    ``sys.exit(n)`` n, ``sys.exit(message)`` 1 with the message on stderr."""
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1


def write_image_folder(root, per_class=(8, 4), seed=0, size=40):
    """Tiny learnable image folders ``root/{train,val}/<class>/*.png``: each
    class is a noisy image dominated by one colour channel, of varied
    shapes (some smaller than 32 px, to exercise resizing)."""
    rng = np.random.default_rng(seed)
    for split, count in zip(('train', 'val'), per_class):
        for label, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                h, w = size + int(rng.integers(-12, 12)), size + int(
                    rng.integers(-12, 12))
                img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
                img[..., 2 - label] = rng.integers(150, 255, (h, w))  # BGR
                cv2.imwrite(os.path.join(folder, f'{i}.png'), img)
    return root


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
    return write_image_folder(str(tmp_path_factory.mktemp('images')))


def tiny_cfg(tiny_config, image_folder, work_dir):
    """The tiny config reading ``image_folder`` (as ``--cfg-options
    data_root=...`` would) and writing to ``work_dir``."""
    from mmengine.config import Config

    from san_mm.apis.cli import merge_cfg_options
    cfg = Config.fromfile(tiny_config)
    merge_cfg_options(cfg, dict(data_root=str(image_folder)))
    cfg.work_dir = str(work_dir)
    return cfg


@pytest.fixture(scope='session')
def tiny_config():
    return os.path.join(REPO, 'tests', 'data', 'tiny_san_resnet18.py')


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Registry lookups resolve in mmpretrain's scope, whatever scope an
    earlier test's Runner left as the current default."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
