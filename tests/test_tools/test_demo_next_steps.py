"""`make demo` on a tiny recipe, then every command it prints under "Next:": the one-liner as
printed (bash, a new interpreter), the tools with the printed arguments (forked, run_tool)."""
import ast
import glob
import os
import shlex
import subprocess
import sys
import types

import pytest
import torch

from tests.conftest import REPO, cpu_tool_env, load_script, run_tool

pytestmark = pytest.mark.long  # run first (conftest.py)


def test_demo_and_the_commands_it_prints_next(tmp_path, monkeypatch, capsys):
    from san_mm.datasets import prepare_fashion_mnist
    if prepare_fashion_mnist(os.path.join(REPO, 'data', 'fashion_mnist')) is None:
        pytest.skip('Fashion-MNIST is not on this machine and the Debian package '
                    'dataset-fashion-mnist could not be installed (make demo needs it)')
    work_dir = tmp_path / 'demo'
    demo = load_script('tools/demo_fashion_mnist.py')

    def run_step(cmd, check, cwd):
        # the step the demo starts as `python tools/<tool> args`, through
        # run_tool (a fork of this process: the interpreter start is the
        # step's largest cost here, and what a new interpreter would add is
        # checked on the commands below and in the next test)
        assert cmd[0] == sys.executable and check and cwd == REPO
        print(run_tool(os.path.basename(cmd[1]), *cmd[2:])[1], flush=True)

    monkeypatch.setattr(demo, 'subprocess', types.SimpleNamespace(run=run_step))
    monkeypatch.setattr(sys, 'argv', [
        'demo_fashion_mnist.py', '--config',
        os.path.join(REPO, 'tests', 'data', 'tiny_fmnist_demo.py'), '--work-dir',
        str(work_dir)])
    demo.main()
    log = capsys.readouterr().out
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
    # The one-liner as a user types it: bash, a new interpreter, san_mm's
    # imports (and its warning filters) from nothing.
    done = subprocess.run(['bash', '-c', commands[0]], cwd=REPO, capture_output=True,
                          text=True, env=cpu_tool_env())
    assert done.returncode == 0, (commands[0], (done.stdout + done.stderr)[-3000:])
    assert 'pkg_resources' not in done.stdout + done.stderr
    classes = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
               'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
    # it prints the class after the inferencer's progress bar
    assert done.stdout.strip().endswith(classes)
    # The tool commands with the arguments as the shell splits them.
    outputs = []
    for command in commands[1:]:
        python, tool, *args = shlex.split(command)
        assert python == demo.python() and tool.startswith('tools/'), command
        outputs.append(run_tool(os.path.basename(tool), *args)[1])
    exported = work_dir / 'exported_22'
    assert (exported / 'config.py').is_file() and (exported / 'model.pth').is_file()
    assert (work_dir / 'sized.pth').is_file()
    assert 'size table written to' in outputs[1]
    served = [line for line in outputs[2].splitlines()
              if line.startswith('| ') and '.png' in line]
    assert len(served) == 8  # every test image the demo wrote, at one chosen size


def first_openmmlab_import(path):
    """The first package among san_mm, mmengine, mmcv and mmpretrain that the
    script at ``path`` imports, in the order of its lines."""
    imports = sorted((node.lineno, alias.name if isinstance(node, ast.Import) else node.module)
                     for node in ast.walk(ast.parse(open(path).read()))
                     if isinstance(node, (ast.Import, ast.ImportFrom))
                     for alias in node.names)
    roots = [name.split('.')[0] for _, name in imports if name]
    return next(root for root in roots if root in ('san_mm', 'mmengine', 'mmcv', 'mmpretrain'))


@pytest.mark.parametrize('tool', sorted(glob.glob(os.path.join(REPO, 'tools', '*.py'))),
                         ids=os.path.basename)
def test_every_tool_imports_san_mm_first(tool):
    # Users see warnings only where they can act on them: san_mm's import
    # filters mmengine's pkg_resources and mmcv-lite's missing-ops warnings
    # (the one-liner above checks that in a new interpreter), so a tool
    # imports san_mm before anything that imports mmengine.
    assert first_openmmlab_import(tool) == 'san_mm'
