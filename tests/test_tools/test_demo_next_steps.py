"""`make demo` on a tiny recipe, then every command it prints under "Next:", run as printed."""
import os
import subprocess

import pytest
import torch

from tests.conftest import REPO, cpu_tool_env, run_tool

pytestmark = pytest.mark.long  # run first (conftest.py)


def test_demo_and_the_commands_it_prints_next(tmp_path):
    from san_mm.datasets import prepare_fashion_mnist
    if prepare_fashion_mnist(os.path.join(REPO, 'data', 'fashion_mnist')) is None:
        pytest.skip('Fashion-MNIST is not on this machine and the Debian package '
                    'dataset-fashion-mnist could not be installed (make demo needs it)')
    work_dir = tmp_path / 'demo'
    _, log = run_tool('demo_fashion_mnist.py', '--config',
                      os.path.join(REPO, 'tests', 'data', 'tiny_fmnist_demo.py'),
                      '--work-dir', work_dir)
    # users see warnings only where they can act on them (each step of the
    # demo runs in an interpreter of its own, as do the commands below)
    assert 'pkg_resources' not in log
    assert 'smooth:' in log and 'mean over the training sizes' in log
    # BN calibrated once (tools/calibrate_bn.py), stored in the checkpoint and
    # reused by the test runs, which calibrate nothing again
    steps = [(step.split()[1], step) for step in log.split('\n$ ')[1:]]
    (calibration, ) = [step for name, step in steps if name == 'tools/calibrate_bn.py']
    assert 'calibrated BN statistics for sizes [10, 14, 18, 22, 26, 32]' in calibration
    state = torch.load(work_dir / 'san_resnet18_fmnist_calibrated.pth',
                       weights_only=True)['state_dict']
    assert 'backbone.bn1.calibrated.22.running_mean' in state
    test_runs = [step for name, step in steps if name == 'tools/test.py']
    assert len(test_runs) == 3 and not any('calibrated BN statistics for size' in step
                                 for step in test_runs)
    lines = log[log.index('Next:'):].splitlines()[1:]
    # the commands name the interpreter that ran the demo (.venv/bin/python)
    commands = [line.strip() for line in lines
                if line.startswith('  .venv/bin/python ') or line.startswith('  python ')]
    assert len(commands) == 4, lines
    outputs = []
    for command in commands:
        done = subprocess.run(['bash', '-c', command], cwd=REPO, capture_output=True,
                              text=True, env=cpu_tool_env())
        assert done.returncode == 0, (command, (done.stdout + done.stderr)[-3000:])
        assert 'pkg_resources' not in done.stdout + done.stderr
        outputs.append(done.stdout)
    classes = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
               'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
    # the one-liner prints the class after the inferencer's progress bar
    assert outputs[0].strip().endswith(classes)
    exported = work_dir / 'exported_22'
    assert (exported / 'config.py').is_file() and (exported / 'model.pth').is_file()
    assert (work_dir / 'sized.pth').is_file()
    assert 'size table written to' in outputs[2]
    served = [line for line in outputs[3].splitlines()
              if line.startswith('| ') and '.png' in line]
    assert len(served) == 8  # every test image the demo wrote, at one chosen size
