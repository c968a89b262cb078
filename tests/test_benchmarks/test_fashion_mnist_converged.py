"""The converged Fashion-MNIST study's tables are generated from its JSON:
what they print must be the numbers in the file, for a finished study and for
one still running, in the README's summary and in docs/results.md."""
import json
import os.path as osp
import re

import pytest


@pytest.fixture()
def study(tmp_path, monkeypatch, load_benchmark):
    module = load_benchmark('fashion_mnist_converged')
    sections = load_benchmark('generated_sections')
    for attribute, name, section in (('README', 'README.md', module.SUMMARY_SECTION),
                                     ('RESULTS_DOC', 'results.md', module.RESULTS_SECTION)):
        page = tmp_path / name
        page.write_text(f'# head\n\n{sections.begin_marker(section, module.TABLES_COMMAND)}\n'
                        f'old\n{sections.end_marker(section)}\n\n# tail\n')
        monkeypatch.setattr(module, attribute, str(page))
    monkeypatch.setattr(module, 'RESULTS', str(tmp_path / 'results.json'))
    return module


def run_record(study, method, seed, value):
    """A final-run record in the results file's shape, every top-1 = value
    (the baselines a point lower at their own size)."""
    sizes = [str(s) for s in study.ALL_SIZES]
    if study.is_baseline(method):
        top1 = {mode: dict.fromkeys(sizes, value) for mode in study.BASELINE_MODES}
        own = method.split('@')[1]
        top1['as_trained'][own] = value - 1.0
    else:
        top1 = {mode: dict.fromkeys(sizes, value) for mode in study.SAN_MODES}
    val = {str(s): 85.0 for s in study.method_sizes(method)}
    record = dict(key=f'{method}/{seed}', method=method, seed=seed, wall_s=60.0,
                  recipe=study.recipe_for(method), top1=top1,
                  val_top1_by_epoch={'1': dict.fromkeys(val, 80.0), '2': val})
    if not study.is_baseline(method):
        record['val_top1'] = {mode: {str(s): value + (mode == 'calibrated')
                                     for s in study.UNSEEN_SIZES}
                              for mode in study.SAN_MODES}
    return record


def test_unfinished_study_says_so_and_lists_its_runs(study):
    data = dict(runs=[run_record(study, 'baseline@28', 0, 93.0)])
    study.write_tables(data)
    readme = open(study.README).read()
    assert 'Not answered yet' in readme and 'baseline@28 (seeds [0])' in readme
    assert readme.startswith('# head') and readme.endswith('# tail\n')
    assert 'old' not in readme
    page = open(study.RESULTS_DOC).read()
    assert 'Not answered yet' in page and 'old' not in page
    lines = page.splitlines()
    header = lines.index(next(l for l in lines if l.startswith('| size |')))
    separator, row = lines[header + 1], lines[header + 2]
    # The header, its separator and every row have the same number of cells,
    # methods missing or not (a markdown table breaks otherwise).
    assert separator.count('|') == lines[header].count('|') == row.count('|')
    assert row == '| 28 | 92.00 | 92.00 |'


def test_finished_study_answers_from_the_numbers(study, monkeypatch):
    # a study whose protocol asks for the two seeds below
    monkeypatch.setattr(study, 'FINAL_SEEDS', {
        m: (0, 1) if m == 'san' or study.is_baseline(m) else (0, ) for m in study.METHODS})
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.2)):
        runs.append(run_record(study, 'san', seed, 92.0 + shift))
        runs += [run_record(study, f'baseline@{s}', seed, 92.0 + shift)
                 for s in study.TRAIN_SIZES]
    for method in ('san_kd_largest', 'san_no_kd', 'no_meta', 'san_sum_loss'):
        runs.append(run_record(study, method, 0, 90.0))
    study.write_tables(dict(runs=runs))
    assert study.write_tables(dict(runs=runs), check=True)
    md = open(osp.join(osp.dirname(study.RESULTS), 'fashion_mnist_converged.md')).read()
    assert study.results_section(dict(runs=runs)).split('\n\n')[0] in md
    assert '**Answer.**' in md and 'Preliminary' not in md
    # SAN 92.1 ± 0.14 against baselines 91.1 ± 0.14 at their own size: +1.00,
    # spread sqrt(2) * 0.141 = 0.20, more than twice the spread: better.
    assert '28 px +1.00 (spread 0.20, better)' in md
    # Unseen sizes: the calibrated mode is the best on validation (by
    # construction above) and is compared with the recalibrated baseline.
    assert '10 px +0.00 (calibrated vs baseline@12 calibrated' in md
    assert '| 28 | 91.10 ± 0.14 | 91.10 ± 0.14 | 92.10 ± 0.14 | 90.00 |' in md
    # Unseen sizes: SAN in every mode, then each SAN-family method in its
    # best mode on validation (calibrated here), one column per method.
    unseen = next(l for l in md.splitlines() if l.startswith('| 10 (baseline@12) |'))
    header = next(l for l in md.splitlines() if l.startswith('| size | baseline at nearest'))
    assert unseen.count('|') == header.count('|')
    assert header.endswith('| SAN, summed loss, mode best on val |')
    assert unseen.endswith('| 92.10 ± 0.14 (calibrated)'
                           + ' | 90.00 (calibrated)' * 4 + ' |')
    for name in ('fashion_mnist_converged_accuracy_vs_size.png',
                 'fashion_mnist_converged_learning_curves.png'):
        assert osp.getsize(osp.join(osp.dirname(study.RESULTS), name)) > 0
    json.dumps(runs)  # the records are plain data
    # The README's summary: one row per size, SAN against the network it
    # replaces there (at an unseen size the nearest, BN recalibrated).
    readme = open(study.README).read()
    assert ('| 28 | 91.10 ± 0.14 (trained at 28) | 92.10 ± 0.14 (proxy) | +1.00 (0.20) | '
            'better |') in readme
    assert ('| 10 (unseen) | 92.10 ± 0.14 (trained at 12, BN recalibrated) | '
            '92.10 ± 0.14 (calibrated) | +0.00 (0.20) | within the seed spread |') in readme
    assert 'Mean over the training sizes: SAN 92.10, the separately trained networks 91.10' \
        in readme
    # A results file with another number no longer matches: --check says so.
    runs[0]['top1']['proxy']['28'] += 1.0
    assert not study.write_tables(dict(runs=runs), check=True)


def test_answer_is_preliminary_while_runs_are_missing(study):
    runs = [run_record(study, 'san', 0, 92.0)]
    runs += [run_record(study, f'baseline@{s}', 0, 92.0) for s in study.TRAIN_SIZES]
    study.write_tables(dict(runs=runs))
    page = open(study.RESULTS_DOC).read()
    assert '**Preliminary answer**' in page and '**Answer.**' not in page
    assert 'missing: baseline@28 seed 1,' in page and 'san_sum_loss seed 0' in page
    assert '28 px +1.00 (' not in page  # one seed each side: no verdict
    assert '28 px +1.00' in page
    readme = open(study.README).read()
    assert '**Preliminary**' in readme and 'missing: baseline@28 seed 1,' in readme
    assert '| 28 | 91.00 (trained at 28) | 92.00 (proxy) | +1.00 | one seed |' in readme


def test_the_chosen_recipe_is_answered_paired_by_seed_with_its_compute(study, monkeypatch):
    """The recipe search and the chosen recipe's answer: each SAN variant's
    training compute against the five baselines' together (from the images
    it trained at each size), its validation numbers, and the chosen one's
    test numbers against the baselines paired by seed."""
    chosen = dict(kd_mode='largest', sampling='sandwich+1')
    monkeypatch.setattr(study, 'CHOSEN', chosen)
    recipe = study.recipe_for('san', chosen)
    macs = study.macs_per_size()
    # one epoch of the sandwich rule: 28 and 12 every image, the three between a third each
    images = {'28': 300, '24': 100, '20': 100, '16': 100, '12': 300}
    runs, tuning = [], []
    for seed, noise in ((0, 0.0), (1, 0.1), (2, -0.1)):
        runs += [run_record(study, f'baseline@{s}', seed, 92.0) for s in study.TRAIN_SIZES]
        record = run_record(study, 'san', seed, 91.0 + 0.5 + noise)
        record.update(recipe=recipe, trained_images=images, key=f'chosen/{seed}')
        record['train_gmacs'] = study.train_gmacs(record, images)
        runs.append(record)
        if seed < 2:
            tuning.append(dict(record))
    data = dict(runs=runs, tuning=tuning)
    section = study.results_section(data)
    variant = 'san [kd_mode=largest, sampling=sandwich+1]'
    # 91.5 + noise against 91.0 (the baselines a point lower at their own
    # size): +0.50 at every size, paired spread 0.10, beyond twice it
    assert f'**The chosen recipe**, `{variant}` (seeds [0, 1, 2])' in section
    assert '28 px +0.50 (0.10, better)' in section
    assert 'at 5 of 5 sizes' in section
    sandwich = sum(n * macs[int(s)] for s, n in images.items())
    fraction = sandwich / sum(3 * 300 * macs[s] / 3 for s in study.TRAIN_SIZES)
    baselines = study.baselines_gmacs()
    assert abs(study.train_gmacs(runs[-1], images) - sandwich / 1e9) < 0.1
    shown = f'{round(sandwich / 1e9, 1) / baselines:.2f}'
    assert f'for {shown}x their training compute' in section
    row = next(l for l in section.splitlines() if l.startswith(f'| **{variant}**'))
    assert f'| {shown} | [0, 1, 2] |' in row  # the finals are the tuned runs' seeds
    # the README's sentence (under its table of the paper's SAN): the same verdicts, in a line
    sentence = study.chosen_summary(data)
    assert f'(KD largest, sandwich+1) trains one SAN for {shown}x' in sentence
    assert ('at 28 / 24 / 20 / 16 / 12 px: +0.50 / +0.50 / +0.50 / +0.50 / +0.50 (better at 5, '
            'worse at 0') in sentence
    assert fraction > 0


def test_each_variant_takes_the_mode_best_on_its_own_validation_runs(study, monkeypatch):
    """The paper's SAN and the chosen recipe are both method 'san': at an
    unseen size each is reported in the mode best on its own validation
    runs, not on the two pooled."""
    chosen = dict(kd_mode='largest', sampling='sandwich+1')
    monkeypatch.setattr(study, 'CHOSEN', chosen)
    runs = []
    for seed in (0, 1):
        runs += [run_record(study, f'baseline@{s}', seed, 92.0) for s in study.TRAIN_SIZES]
        paper = run_record(study, 'san', seed, 91.0)  # calibrated best on val, by 1
        for values in paper['val_top1'].values():
            values.update({s: v + 2 * (values is paper['val_top1']['calibrated'])
                           for s, v in values.items()})
        recipe = run_record(study, 'san', seed, 91.5)
        recipe.update(recipe=study.recipe_for('san', chosen), key=f'chosen/{seed}')
        recipe['val_top1']['ideal'] = {s: v + 2 for s, v in recipe['val_top1']['ideal'].items()}
        runs += [paper, recipe]
    data = dict(runs=runs)
    variant = 'san [kd_mode=largest, sampling=sandwich+1]'
    size = study.UNSEEN_SIZES[0]
    assert study.best_mode(data, 'san', size) == 'calibrated'
    assert study.best_mode(data, variant, size) == 'ideal'
    section = study.results_section(data)
    assert f'{size} px -0.50 (ideal' in section  # 91.5 against the baseline's 92


def shown_options(method):
    """The ``--cfg-options`` that docs/training.md ("Which recipe when") shows for turning the
    chosen recipe's config into ``method``'s recipe ('chosen': none)."""
    from tests.conftest import REPO
    with open(osp.join(REPO, 'docs', 'training.md')) as f:
        text = f.read()
    if method == 'chosen':
        return []
    options = re.search(r'^\| the most accurate model.*?`--cfg-options ([^`]+)`', text,
                        re.M).group(1).split()
    if method == 'san':
        options += re.search(r"^\| the paper's recipe.*? plus `([^`]+)`", text,
                             re.M).group(1).split()
    return options


@pytest.mark.parametrize('method', ['chosen', 'san_kd_largest', 'san'])
def test_the_chosen_recipes_config_trains_what_the_study_ran(load_benchmark, tmp_path, method):
    from functools import reduce

    from san_mm.apis.cli import config_with_options
    from tests.conftest import REPO
    study = load_benchmark('fashion_mnist_converged')
    options = shown_options(method)
    recipe = (study.recipe_for('san', study.CHOSEN) if method == 'chosen'
              else study.recipe_for(method))
    ran = study.build_cfg('san' if method == 'chosen' else method, recipe, 0, str(tmp_path))
    config = config_with_options(osp.join(REPO, study.CHOSEN_CONFIG), options)
    # the study states the distillation weight and leaves the sampling keys out where they are
    # off; the config leaves the loss's default weight, 1, and says them, off
    assert ran.model.distill.pop('loss_weight') == 1.0
    for key, default in (('sandwich', False), ('num_sampled_sizes', None)):
        assert config.model.pop(key, default) == ran.model.pop(key, default), key
    assert config.model.to_dict() == ran.model.to_dict()
    for key in ('train_dataloader.batch_size', 'train_dataloader.dataset.indices',
                'train_dataloader.dataset.pipeline', 'optim_wrapper.optimizer',
                'train_cfg.max_epochs'):
        assert (reduce(getattr, key.split('.'), config) ==
                reduce(getattr, key.split('.'), ran)), key
    (cosine, ) = ran.param_scheduler
    assert (config.param_scheduler.end, config.param_scheduler.T_max) == (cosine.end,
                                                                          cosine.T_max)
