"""Serving under a budget, end to end on tiny images: tools/sweep_sizes.py --save-table stores the
table with the model, tools/infer.py and BudgetedInferencer pick from it (CPU)."""
import os
import re

import mmengine
import pytest
import torch

from san_mm.apis import (BudgetedInferencer, SizeTableError, choose_size,
                         read_size_table, store_size_table)
from tests.conftest import run_tool
from tests.test_tools.test_train_test_resume import data_root_options

SIZES = (32, 28, 24, 20, 18)  # training sizes 32 / 24 / 18, unseen 28 / 20


@pytest.fixture(scope='module')
def sized(tmp_path_factory, image_folder, tiny_config):
    """One tiny model, trained once, and its table from one sweep command."""
    work_dir = tmp_path_factory.mktemp('serve')
    run_tool('train.py', tiny_config, '--work-dir', work_dir, '--cfg-options',
             *data_root_options(image_folder))
    out = work_dir / 'sized.pth'
    _, log = run_tool('sweep_sizes.py', tiny_config, work_dir / 'epoch_2.pth',
                      '--sizes', *SIZES, '--calibration-images', 8,
                      '--save-table', out, '--latency', '--work-dir',
                      work_dir / 'sweep', '--cfg-options',
                      *data_root_options(image_folder))
    return dict(source=str(work_dir / 'epoch_2.pth'), sized=str(out),
                work_dir=work_dir, log=log)


def reader_pick(table, max_macs):
    """What a person reading the table picks: the most accurate size within
    the budget, each at its best mode; on equal accuracy, the cheaper."""
    fits = [r for r in table['sizes'] if r['macs'] <= max_macs]
    best = max(fits, key=lambda r: (r['top1'][r['best_mode']], -r['macs']))
    return best['size'], best['best_mode']


def second_cheapest_budget(table):
    macs = sorted(r['macs'] for r in table['sizes'])
    return macs[1] + 0.5  # exactly enough for the two cheapest sizes


def val_images(image_folder):
    return sorted(os.path.join(image_folder, 'val', c, f)
                  for c in os.listdir(os.path.join(image_folder, 'val'))
                  for f in os.listdir(os.path.join(image_folder, 'val', c)))


def test_sweep_stores_the_table_in_a_weights_only_checkpoint(sized):
    checkpoint = torch.load(sized['sized'], map_location='cpu',
                            weights_only=True)
    table = checkpoint['meta']['size_table']
    assert table == read_size_table(sized['sized'])
    assert (table['version'], table['metric'], table['split']) == (
        1, 'accuracy/top1', 'val')
    assert (table['dataset'], table['num_images']) == ('CustomDataset', 12)
    assert table['calibration_images'] == 8
    assert [r['size'] for r in table['sizes']] == list(SIZES)
    for row in table['sizes']:
        assert set(row['top1']) == {'proxy', 'ideal', 'calibrated',
                                    'data_free'}
        assert row['trained'] == (row['size'] in (32, 24, 18))
        assert row['macs'] > 0 and row['params'] > 0
        if row['trained']:  # every mode is the same network there
            assert len(set(row['top1'].values())) == 1
            assert row['best_mode'] == 'proxy'
    assert sorted(r['macs'] for r in table['sizes']) == [
        r['macs'] for r in reversed(table['sizes'])]
    # calibrated BN travels with the model exactly where calibrated wins
    winners = table['calibrated_sizes']
    assert winners == sorted(r['size'] for r in table['sizes']
                             if r['best_mode'] == 'calibrated')
    stored = {int(m.group(1)) for k in checkpoint['state_dict']
              for m in [re.search(r'\.calibrated\.(\d+)\.', k)] if m}
    assert stored == set(winners)
    assert list(checkpoint['meta']['dataset_meta']['classes']) == [
        'blue', 'green', 'red']  # the source's meta is kept
    latency = table['latency']
    assert latency['batch'] == 1
    assert {'platform', 'torch', 'threads', 'device'} <= set(
        latency['machine'])  # the machine is named
    assert sorted(int(s) for s in latency['ms']) == sorted(SIZES)
    # the printed table
    assert '| size | trained | MMACs | params (M) | proxy |' in sized['log']


def test_infer_picks_the_size_a_reader_would_pick(sized, image_folder,
                                                  tiny_config):
    table = read_size_table(sized['sized'])
    budget = second_cheapest_budget(table)
    size, mode = reader_pick(table, budget)
    _, log = run_tool('infer.py', tiny_config, sized['sized'],
                      os.path.join(image_folder, 'val'), '--max-mmacs',
                      budget / 1e6)
    assert re.search(rf': size {size} px, {mode} mode, ', log), log[-3000:]
    rows = re.findall(r'^\| (\S+\.png) \| (\w+) \| ([\d.]+) \| (\d+) \| '
                      r'([\d.]+) \|$', log, re.M)
    assert len(rows) == 12  # the folder, searched recursively
    macs = next(r['macs'] for r in table['sizes'] if r['size'] == size)
    assert {(r[3], r[4]) for r in rows} == {(str(size), f'{macs / 1e6:.2f}')}


@pytest.mark.parametrize('pick', ['budget', 'other size'])
def test_inferencer_equals_tools_test_at_that_size_and_mode(
        sized, image_folder, tiny_config, tmp_path, pick):
    table = read_size_table(sized['sized'])
    if pick == 'budget':
        kwargs = dict(max_macs=second_cheapest_budget(table))
    else:  # a size in another mode than the budget's pick, if there is one
        chosen = choose_size(table, max_macs=second_cheapest_budget(table))
        other = [r for r in table['sizes']
                 if r['best_mode'] != chosen['inference_mode']]
        kwargs = dict(size=(other or table['sizes'])[0]['size'])
    inferencer = BudgetedInferencer(tiny_config, pretrained=sized['sized'],
                                    **kwargs)
    size, mode = (inferencer.choice['size'],
                  inferencer.choice['inference_mode'])
    run_tool('test.py', tiny_config, sized['sized'], '--work-dir', tmp_path,
             '--out', tmp_path / 'preds.pkl', '--cfg-options',
             f'test_sizes=[{size}]', f'inference_mode={mode}',
             *data_root_options(image_folder))
    expected = mmengine.load(str(tmp_path / f'preds@{size}.pkl'))
    images = [sample['img_path'] for sample in expected]
    results = inferencer(images, batch_size=4)
    for sample, result in zip(expected, results):
        assert (result['size'], result['inference_mode']) == (size, mode)
        assert result['pred_label'] == int(sample['pred_label'])
        torch.testing.assert_close(torch.from_numpy(result['pred_scores']),
                                   sample['pred_score'])


def test_inferencer_chooses_again_per_call(sized, image_folder, tiny_config):
    table = read_size_table(sized['sized'])
    inferencer = BudgetedInferencer(tiny_config, pretrained=sized['sized'])
    best = choose_size(table)
    assert inferencer.choice == best  # no budget: the most accurate size
    image = val_images(image_folder)[0]
    (result, ) = inferencer(image, size=24)
    assert (result['size'], result['inference_mode']) == (24, 'proxy')
    (sample, ) = inferencer(image, return_datasamples=True)  # keeps 24
    assert sample.size == 24 and sample.macs == result['macs']
    assert inferencer.backbone.inference_mode == 'proxy'  # restored


def test_errors_name_the_value_and_the_next_step(sized, tiny_config,
                                                 image_folder):
    with pytest.raises(SizeTableError) as error:
        BudgetedInferencer(tiny_config, pretrained=sized['source'])
    assert str(error.value) == (
        f"{sized['source']} has no size table (meta['size_table']); add one "
        f"with: python tools/sweep_sizes.py CONFIG {sized['source']} "
        '--save-table OUT.pth')
    with pytest.raises(SizeTableError, match='size 30 is not in the size '
                       r'table \(sizes \[32, 28, 24, 20, 18\]\)'):
        BudgetedInferencer(tiny_config, pretrained=sized['sized'], size=30)
    # a table whose calibrated size meets a model without its statistics
    table = read_size_table(sized['sized'])
    row = next(r for r in table['sizes'] if r['size'] == 28)
    row['top1']['calibrated'], row['best_mode'] = 100.0, 'calibrated'
    with pytest.raises(SizeTableError, match=r"size 28's best mode is "
                       r"'calibrated', but the model has no calibrated BN "
                       r'statistics for it \(it has them for \[\]\)'):
        BudgetedInferencer(tiny_config, pretrained=sized['source'],
                           size_table=table, size=28)
    with pytest.raises(SizeTableError, match="got split='test': use "
                       "split='val'"):
        store_size_table(mmengine.Config.fromfile(tiny_config),
                         sized['source'], 'x.pth', [24], split='test')
    code, log = run_tool('infer.py', tiny_config, sized['sized'],
                         os.path.join(image_folder, 'val'), '--max-mmacs',
                         0.0001, check=False)
    cheapest = min(table['sizes'], key=lambda r: r['macs'])
    assert code == 1
    assert (f'error: no size fits max_macs=100 (0.00 MMACs): the cheapest, '
            f"{cheapest['size']} px, needs {cheapest['macs'] / 1e6:.2f} "
            f"MMACs; raise max_macs to at least {cheapest['macs']}") in log


def test_plot_tool_reads_the_stored_table(sized, tiny_config, tmp_path):
    out = tmp_path / 'curve.png'
    _, log = run_tool(os.path.join('analysis', 'plot_accuracy_flops.py'),
                      tiny_config, sized['sized'], '--label', 'tiny',
                      '--all-modes', '--out', out)
    assert os.path.getsize(out) > 0
    table = read_size_table(sized['sized'])
    # One column per mode, then the served best-mode curve (drawn last).
    assert '| size | MMACs | tiny, proxy | tiny, ideal |' in log
    assert ' | tiny, best mode |' in log
    lines = log.splitlines()
    for row in table['sizes']:
        best = row['top1'][row['best_mode']]
        line = next(l for l in lines if l.startswith(
            f"| {row['size']} | {row['macs'] / 1e6:.1f} |"))
        assert line.endswith(f'| {best:.2f} |'), line
