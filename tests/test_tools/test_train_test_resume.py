"""End to end through tools/train.py and tools/test.py on tiny images (CPU)."""
import glob
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import cpu_tool_env, run_tool


def data_root_options(root):
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, image_folder, tiny_config):
    work_dir = tmp_path_factory.mktemp('work')
    _, log = run_tool('train.py', tiny_config, '--work-dir', work_dir,
                      '--cfg-options', *data_root_options(image_folder))
    return work_dir, log


def test_train_two_epochs_logs_per_size_terms(trained):
    work_dir, log = trained
    assert os.path.isfile(work_dir / 'epoch_2.pth')
    for key in ('loss_ce@32', 'loss_ce@24', 'loss_ce@18', 'loss_kd@24',
                'loss_kd@18'):
        assert key in log
    assert 'loss_kd@32' not in log  # the largest size has no teacher
    # validation at every training size, plus the mean, every epoch
    for key in ('accuracy/top1@32', 'accuracy/top1@18', 'accuracy/top1@mean'):
        assert key in log
    best = glob.glob(str(work_dir / 'best_accuracy_top1@mean_epoch_*.pth'))
    assert len(best) == 1, os.listdir(work_dir)


def test_one_test_run_overrides_sizes_and_mode_calibrates_once_and_dumps(
        trained, image_folder, tiny_config, tmp_path):
    """tools/test.py with --cfg-options test_sizes=[...] inference_mode=...
    evaluates exactly those sizes (table and mean printed), calibrates BN
    once per unseen size (not at a training size) and dumps one prediction
    file per size."""
    work_dir, _ = trained
    _, log = run_tool('test.py', tiny_config, work_dir / 'epoch_2.pth',
                      '--work-dir', tmp_path, '--out', tmp_path / 'preds.pkl',
                      '--cfg-options', 'test_sizes=[28,24,20]',
                      'inference_mode=calibrated',
                      *data_root_options(image_folder))
    for size in (28, 24, 20):
        assert f'accuracy/top1@{size}' in log
        assert os.path.isfile(tmp_path / f'preds@{size}.pkl')
    assert 'accuracy/top1@mean' in log and 'accuracy/top1@32' not in log
    assert re.search(r'\| 28 \| [\d.]+ \|', log)  # the per-size table
    assert re.search(r'\| mean \| [\d.]+ \|', log)
    assert 'calibrated BN statistics for size 28 on 24 training images' in log
    assert 'calibrated BN statistics for size 20' in log
    assert 'calibrated BN statistics for size 24' not in log  # trained size
    assert 'size 20, calibrated mode: encoding 0.4375, BN calibrated' in log


def test_resume_continues_from_last_checkpoint(trained, image_folder,
                                               tiny_config):
    work_dir, _ = trained
    _, log = run_tool('train.py', tiny_config, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'train_cfg.max_epochs=3',
                      *data_root_options(image_folder))
    assert 'resumed epoch: 2' in log
    assert os.path.isfile(work_dir / 'epoch_3.pth')
    checkpoint = torch.load(work_dir / 'epoch_3.pth', weights_only=True)
    assert checkpoint['meta']['epoch'] == 3


def test_sweep_prints_a_row_per_size_and_a_column_per_mode(
        trained, image_folder, tiny_config, tmp_path):
    work_dir, _ = trained
    out = tmp_path / 'sweep.md'
    run_tool('sweep_sizes.py', tiny_config, work_dir / 'epoch_2.pth',
             '--sizes', 17, 20, 36, 24, '--modes', 'proxy', 'data_free',
             '--work-dir', tmp_path, '--out', out, '--cfg-options',
             *data_root_options(image_folder))
    lines = out.read_text().splitlines()
    assert lines[0] == '| size | trained | proxy | data_free |'
    assert [line.split('|')[1].strip() for line in lines[2:]] == [
        '36', '24', '20', '17']
    assert lines[3].split('|')[2].strip() == 'yes'  # 24 is a training size
    # at a training size both modes give the same accuracy
    cells = lines[3].split('|')
    assert cells[3].strip() == cells[4].strip()


PLAIN_MMPRETRAIN_FORWARD = """
import sys, torch
from mmpretrain import get_model
model = get_model(sys.argv[1], pretrained=sys.argv[2])
model.eval()
assert not any(name.startswith('san_mm') for name in sys.modules)
x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    torch.save(model(x, mode='tensor'), sys.argv[3])
print(type(model.backbone).__name__)
"""


def test_export_runs_with_mmpretrain_alone(trained, tiny_config, tmp_path):
    from mmengine.config import Config
    from mmpretrain import get_model
    work_dir, _ = trained
    out_dir = tmp_path / 'exported'
    _, log = run_tool('export.py', tiny_config, work_dir / 'epoch_2.pth',
                      '--size', 20, '--inference-mode', 'data_free',
                      '--out-dir', out_dir)
    # The exported model holds the tensors the SAN forward uses (generated
    # kernels, blended BN) and runs the same float ops on them: exact, here and
    # in the plain mmpretrain process below (measured 0 for two trained models
    # x {1, 2} threads, logits up to 10, where 1e-5 would have been ~10 ulp).
    diff = float(re.search(r'max_abs_diff: (\S+)', log).group(1))
    assert diff == 0
    logits_file = tmp_path / 'plain_logits.pt'
    out = subprocess.run(
        [sys.executable, '-c', PLAIN_MMPRETRAIN_FORWARD, out_dir / 'config.py',
         out_dir / 'model.pth', logits_file], capture_output=True, text=True,
        env=cpu_tool_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('ResNet')
    cfg = Config.fromfile(tiny_config)
    cfg.model.backbone.inference_mode = 'data_free'
    san = get_model(cfg, pretrained=str(work_dir / 'epoch_2.pth')).eval()
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = san(x, mode='tensor')
    torch.testing.assert_close(torch.load(logits_file), expected, atol=0,
                               rtol=0)


def test_mmpretrain_inference_apis_on_an_image_file(trained, image_folder,
                                                    tiny_config):
    from mmengine.config import Config
    from mmpretrain import ImageClassificationInferencer, get_model
    work_dir, _ = trained
    checkpoint = str(work_dir / 'epoch_2.pth')
    cfg = Config.fromfile(tiny_config)
    model = get_model(cfg, pretrained=checkpoint)
    image = os.path.join(image_folder, 'val', 'red', '0.png')
    inferencer = ImageClassificationInferencer(model)
    seen = []
    model.backbone.bn1.register_forward_pre_hook(
        lambda *_: seen.append(model.backbone.scale_context.state))
    (result, ) = inferencer(image)
    assert result['pred_class'] in ('red', 'green', 'blue')
    assert len(result['pred_scores']) == 3
    # the size comes from the test pipeline: 32, a training size
    assert [state.size for state in seen] == [32]
    feats = model.extract_feat(torch.rand(1, 3, 24, 24))
    assert feats[-1].shape == (1, 32)


def test_san_backbone_reused_in_another_config(trained, tmp_path):
    """A SAN backbone in a different mmpretrain model (new head, 7 classes),
    initialised from a SAN checkpoint through init_cfg=Pretrained."""
    from mmpretrain.registry import MODELS
    work_dir, _ = trained
    checkpoint = str(work_dir / 'epoch_2.pth')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MetaResNet', depth=18, stem_channels=4,
                      base_channels=4, train_sizes=[32, 24, 18],
                      init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                                    prefix='backbone.')),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=32)))
    model.init_weights()
    source = torch.load(checkpoint, weights_only=True)['state_dict']
    torch.testing.assert_close(  # loaded as is: exact
        model.backbone.layer1[0].conv1.weight_residual,
        source['backbone.layer1.0.conv1.weight_residual'], atol=0, rtol=0)
    model.eval()
    assert model(torch.rand(2, 3, 18, 18), mode='tensor').shape == (2, 7)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='--cuda-graph captures the step on a GPU')
@pytest.mark.parametrize('amp', [False, True])
def test_cuda_graph_training_validates_checkpoints_and_resumes(
        image_folder, tiny_config, tmp_path, amp):
    """tools/train.py --cuda-graph (and --amp) end to end on the GPU: 6
    iterations per epoch (3 eager, the capture, replays), validation with
    the model in eval mode in between, checkpoints, then --resume into a
    third epoch, which captures again in its new process."""
    work_dir = tmp_path / 'graph'
    flags = ['--cuda-graph'] + (['--amp'] if amp else [])
    _, log = run_tool('train.py', tiny_config, '--work-dir', work_dir, *flags,
                      '--cfg-options', *data_root_options(image_folder),
                      env=dict(os.environ))
    assert 'cuda_graph_step: captured the training step' in log
    assert 'accuracy/top1@mean' in log
    assert os.path.isfile(work_dir / 'epoch_2.pth')
    _, log = run_tool('train.py', tiny_config, '--work-dir', work_dir, *flags,
                      '--resume', '--cfg-options', 'train_cfg.max_epochs=3',
                      *data_root_options(image_folder), env=dict(os.environ))
    assert 'resumed epoch: 2' in log
    assert 'cuda_graph_step: captured the training step' in log
    checkpoint = torch.load(work_dir / 'epoch_3.pth', weights_only=True)
    assert checkpoint['meta']['epoch'] == 3
    assert all(torch.isfinite(v).all() for v in
               checkpoint['state_dict'].values() if v.is_floating_point())
