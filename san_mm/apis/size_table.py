"""The accuracy–cost table that travels with a SAN model: its schema, the choice, reading and writing.

A sweep on validation data (``tools/sweep_sizes.py CONFIG CKPT --save-table OUT.pth``) measures
top-1 per size and inference mode; this module turns that into a *size table* stored in the
checkpoint's ``meta['size_table']``, and picks from it the size that serves a budget
(:func:`choose_size`, used by :class:`~san_mm.apis.BudgetedInferencer` and ``tools/infer.py``).

The table is plain data (dicts, lists, str, int, float, bool, None), so the checkpoint loads with
``weights_only=True`` anywhere (no allowlist needed)::

    {'version': 1,
     'metric': 'accuracy/top1',          # what 'top1' holds (percent)
     'dataset': 'FashionMNISTWithVal', 'split': 'val', 'num_images': N,
     'calibration_images': 256,          # training images per calibrated size
     'train_sizes': [28, 24, 20, 16, 12], 'in_channels': 1,
     'source_checkpoint': '...',
     'calibrated_sizes': [...],          # unseen sizes whose BN statistics are stored
     'sizes': [                          # largest first
         {'size': 28, 'trained': True, 'top1': {'proxy': ..., 'ideal': ..., ...},
          'best_mode': 'proxy', 'macs': ..., 'params': ...}, ...],
     'latency': {                        # optional: a property of the machine, not the model
         'machine': {'platform': ..., 'processor': ..., 'cpus': ..., 'torch': ...,
                     'threads': ..., 'device': 'cpu'},
         'batch': 1, 'method': '...', 'ms': {'28': ..., ...}}}

``macs`` are mmengine.analysis multiply-accumulates of convolutions and linear layers at that
size; ``params`` the deployed parameter count (one kernel per generated conv, one BN set).

Choosing (the same rule everywhere, :func:`choose_size`):

* the sizes that fit every budget given (``macs <= max_macs``, ``ms <= max_latency_ms``) are
  candidates; with no budget, every size;
* the most accurate candidate wins, each size counted at its best mode;
* equal accuracy: fewer MACs, then the smaller size;
* a size's best mode is its most accurate one; on equal accuracy the one that needs least:
  ``proxy`` (the default), ``ideal``, ``data_free`` (nothing beyond the trained weights), then
  ``calibrated`` (needs stored BN statistics). At a training size all modes agree: ``proxy``.
"""
import copy
import logging
import math
import numbers
import os
import re
from typing import Dict, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from san_mm.analysis.timing import describe_machine, machine_info
from san_mm.models.utils import INFERENCE_MODES

__all__ = [
    'SIZE_TABLE_KEY', 'SIZE_TABLE_VERSION', 'MODE_PREFERENCE', 'SizeTableError',
    'NoSizeFitsError', 'best_mode', 'build_size_table', 'validate_size_table',
    'choose_size', 'read_size_table', 'write_size_table',
    'select_calibrated_state', 'size_table_markdown', 'size_table_curves'
]

#: Where the table lives in a checkpoint: ``checkpoint['meta'][SIZE_TABLE_KEY]``.
SIZE_TABLE_KEY = 'size_table'
SIZE_TABLE_VERSION = 1
#: Best-mode tie-break, first wins: the modes that need nothing extra first.
MODE_PREFERENCE = ('proxy', 'ideal', 'data_free', 'calibrated')
ADD_TABLE_COMMAND = ('python tools/sweep_sizes.py CONFIG CKPT --save-table '
                     'OUT.pth')
_CALIBRATED_KEY = re.compile(r'\.calibrated\.(\d+)\.')
# Accuracies closer than this count as equal (they are percentages of the
# same image count, so equal counts give equal floats; this only guards
# against float noise from other metrics).
_EQUAL = 1e-9


class SizeTableError(ValueError):
    """A size table is missing, malformed, or cannot serve a request."""


class NoSizeFitsError(SizeTableError):
    """No size of the table fits the budget."""


# ----------------------------------------------------------------- building
def best_mode(top1: Dict[str, float]) -> str:
    """The most accurate mode of one size; ties go to the mode that needs
    least (:data:`MODE_PREFERENCE`).

    Args:
        top1 (dict): ``{mode: accuracy}``.

    Returns:
        str: The best mode.
    """
    if not top1:
        raise SizeTableError('best_mode needs at least one mode, got {}')
    best = max(top1.values())
    return min((m for m, v in top1.items() if v >= best - _EQUAL),
               key=_mode_rank)


def _mode_rank(mode: str) -> int:
    return MODE_PREFERENCE.index(mode) if mode in MODE_PREFERENCE else len(
        MODE_PREFERENCE)


def build_size_table(results: Dict[str, Dict],
                     complexity: Sequence[Dict],
                     train_sizes: Sequence[int],
                     metric: str = 'accuracy/top1',
                     dataset: str = '',
                     split: str = 'val',
                     num_images: int = 0,
                     calibration_images: int = 0,
                     in_channels: int = 3,
                     source_checkpoint: str = '') -> dict:
    """Build a size table from a sweep and the MACs per size.

    Args:
        results (dict): ``{mode: metrics}`` as :func:`~san_mm.apis.sweep_sizes`
            returns (``name@size`` keys).
        complexity (Sequence[dict]): Rows of
            :func:`~san_mm.analysis.complexity_per_size` (``size``, ``flops``,
            ``deployed_params``) for every swept size.
        train_sizes (Sequence[int]): The model's training sizes.
        metric (str): The metric stored as ``top1``. Defaults to
            ``'accuracy/top1'``.
        dataset (str): Dataset the sweep ran on (its type).
        split (str): Which of the config's dataloaders (``'val'``).
        num_images (int): Images evaluated per size.
        calibration_images (int): Training images per calibrated size.
        in_channels (int): Image channels of the model.
        source_checkpoint (str): The swept checkpoint.

    Returns:
        dict: The table (see the module docstring), validated.
    """
    macs = {int(row['size']): row for row in complexity}
    per_size: Dict[int, Dict[str, float]] = {}
    for mode, metrics in results.items():
        for key, value in metrics.items():
            name, _, size = key.rpartition('@')
            if name == metric and size.isdigit():
                per_size.setdefault(int(size), {})[mode] = float(value)
    if not per_size:
        names = sorted({k.rpartition('@')[0] for m in results.values()
                        for k in m if '@' in k})
        raise SizeTableError(
            f'metric {metric!r} is not in the sweep results (they have '
            f'{names}); pass one of those, e.g. --metric {names[0]!r}'
            if names else f'the sweep returned no per-size metrics '
            f'({list(results)}); check the test loop is MultiSizeTestLoop')
    rows = []
    for size in sorted(per_size, reverse=True):
        if size not in macs:
            raise SizeTableError(
                f'size {size} was swept but has no MACs row (complexity rows '
                f'for {sorted(macs)}); compute complexity_per_size for every '
                'swept size')
        top1 = {m: per_size[size][m] for m in sorted(per_size[size],
                                                     key=_mode_rank)}
        rows.append(dict(size=size, trained=size in train_sizes, top1=top1,
                         best_mode=best_mode(top1),
                         macs=int(macs[size]['flops']),
                         params=int(macs[size]['deployed_params'])))
    table = dict(
        version=SIZE_TABLE_VERSION, metric=metric, dataset=str(dataset),
        split=str(split), num_images=int(num_images),
        calibration_images=int(calibration_images),
        train_sizes=[int(s) for s in train_sizes], in_channels=int(in_channels),
        source_checkpoint=str(source_checkpoint),
        calibrated_sizes=sorted(r['size'] for r in rows
                                if r['best_mode'] == 'calibrated'
                                and not r['trained']),
        sizes=rows)
    return validate_size_table(table)


# --------------------------------------------------------------- validating
def _fail(what: str) -> None:
    raise SizeTableError(f'invalid size table: {what}; re-create it with: '
                         f'{ADD_TABLE_COMMAND}')


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(
        value, bool) and math.isfinite(value)


def _check_plain(value, where: str) -> None:
    """Only the types ``torch.load(weights_only=True)`` builds without an
    allowlist (and JSON can hold)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(f'{where} has the key {key!r} of type '
                      f'{type(key).__name__}, expected str')
            _check_plain(item, f'{where}[{key!r}]')
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f'{where}[{i}]')
    elif value is not None and type(value) not in (str, int, float, bool):
        _fail(f'{where} is a {type(value).__name__} ({value!r}), expected '
              'plain data (dict, list, str, int, float, bool, None)')


def validate_size_table(table) -> dict:
    """Check a size table and return it.

    Raises:
        SizeTableError: Naming the first bad value, what was expected and
            how to re-create the table.
    """
    if not isinstance(table, dict):
        _fail(f'expected a dict, got {type(table).__name__}')
    _check_plain(table, 'table')
    version = table.get('version')
    if version != SIZE_TABLE_VERSION:
        _fail(f'version {version!r} is not supported (this san_mm reads '
              f'version {SIZE_TABLE_VERSION})')
    for key, kind in (('metric', str), ('split', str), ('num_images', int),
                      ('sizes', list)):
        if not isinstance(table.get(key), kind) or isinstance(
                table.get(key), bool):
            _fail(f'{key!r} is {table.get(key)!r}, expected a '
                  f'{kind.__name__}')
    rows = table['sizes']
    if not rows:
        _fail("'sizes' is empty, expected one row per swept size")
    seen = set()
    for i, row in enumerate(rows):
        where = f'row {i}'
        if not isinstance(row, dict):
            _fail(f'{where} is {row!r}, expected a dict')
        size = row.get('size')
        if not _is_int(size) or size <= 0:
            _fail(f'{where} has size {size!r}, expected a positive int')
        where = f'row {i} (size {size})'
        if size in seen:
            _fail(f'{where}: size {size} appears twice')
        seen.add(size)
        top1 = row.get('top1')
        if not isinstance(top1, dict) or not top1:
            _fail(f"{where} has top1 {top1!r}, expected {{mode: accuracy}} "
                  'for at least one mode')
        for mode, value in top1.items():
            if mode not in INFERENCE_MODES:
                _fail(f'{where} has the mode {mode!r}, expected one of '
                      f'{list(INFERENCE_MODES)}')
            if not _is_number(value):
                _fail(f'{where} has top1[{mode!r}] = {value!r}, expected a '
                      'finite number')
        if row.get('best_mode') not in top1:
            _fail(f"{where} has best_mode {row.get('best_mode')!r}, expected "
                  f'one of its measured modes {list(top1)}')
        for key in ('macs', 'params'):
            if not _is_int(row.get(key)) or row[key] < 0:
                _fail(f'{where} has {key} {row.get(key)!r}, expected a '
                      'non-negative int')
    calibrated = table.get('calibrated_sizes', [])
    if not isinstance(calibrated, list) or not all(
            _is_int(s) and s in seen for s in calibrated):
        _fail(f'calibrated_sizes is {calibrated!r}, expected a list of sizes '
              f'of the table {sorted(seen, reverse=True)}')
    latency = table.get('latency')
    if latency is not None:
        if not isinstance(latency, dict) or not isinstance(
                latency.get('machine'), dict):
            _fail(f'latency is {latency!r}, expected a dict with machine, '
                  'batch and ms')
        if not _is_int(latency.get('batch')) or latency['batch'] < 1:
            _fail(f"latency batch is {latency.get('batch')!r}, expected a "
                  'positive int')
        ms = latency.get('ms')
        if not isinstance(ms, dict):
            _fail(f"latency ms is {ms!r}, expected {{'<size>': ms}}")
        for key, value in ms.items():
            if not key.isdigit() or int(key) not in seen:
                _fail(f'latency ms has the key {key!r}, expected a size of '
                      f'the table {sorted(seen, reverse=True)} as a str')
            if not _is_number(value) or value < 0:
                _fail(f'latency ms[{key!r}] is {value!r}, expected a '
                      'non-negative number')
    return table


# ----------------------------------------------------------------- choosing
def _mmacs(macs: float) -> str:
    return f'{macs / 1e6:.2f} MMACs'


def _check_budget(name: str, value) -> None:
    if value is not None and (not _is_number(value) or value <= 0):
        raise SizeTableError(
            f'{name} must be a positive number, got {value!r}; e.g. '
            f"{name}={'2e6' if name == 'max_macs' else '5.0'}")


def choose_size(table: dict,
                max_macs: Optional[float] = None,
                max_latency_ms: Optional[float] = None,
                size: Optional[int] = None) -> dict:
    """Pick the size that serves a budget (see the module docstring for the
    rule).

    Args:
        table (dict): A size table.
        max_macs (float, optional): Most multiply-accumulates per image.
        max_latency_ms (float, optional): Most milliseconds per batch of the
            table's latency ``batch``, as measured on the table's machine (a
            warning says so when this machine differs).
        size (int, optional): Serve this size of the table (at its best
            mode) instead of choosing; excludes the budgets.

    Returns:
        dict: ``size``, ``inference_mode``, ``macs``, ``params``, ``top1`` (at
        that mode), ``metric``, ``latency_ms`` (None without a latency
        block), ``trained``.

    Raises:
        NoSizeFitsError: When no size fits, naming the cheapest one.
        SizeTableError: For a bad table, budget or size.
    """
    table = validate_size_table(table)
    rows = table['sizes']
    ms = (table.get('latency') or {}).get('ms', {})
    if size is not None:
        if max_macs is not None or max_latency_ms is not None:
            raise SizeTableError(
                f'give either size ({size!r}) or a budget (max_macs='
                f'{max_macs!r}, max_latency_ms={max_latency_ms!r}), not both')
        matches = [r for r in rows if r['size'] == size]
        if not matches:
            sizes = [r['size'] for r in rows]
            raise SizeTableError(
                f'size {size!r} is not in the size table (sizes {sizes}); '
                'pick one of them, or add it with: python tools/'
                f'sweep_sizes.py CONFIG CKPT --sizes {size} ... --save-table '
                'OUT.pth')
        return _choice(table, matches[0], ms)
    _check_budget('max_macs', max_macs)
    _check_budget('max_latency_ms', max_latency_ms)
    if max_latency_ms is not None:
        if not ms:
            raise SizeTableError(
                'max_latency_ms needs measured latencies, but this size '
                'table has none; measure them on this machine with: '
                f'{ADD_TABLE_COMMAND} --latency')
        _warn_other_machine(table['latency'])
    fit_macs = [r for r in rows if max_macs is None or r['macs'] <= max_macs]
    if not fit_macs:
        cheapest = min(rows, key=lambda r: (r['macs'], r['size']))
        raise NoSizeFitsError(
            f'no size fits max_macs={max_macs:g} ({_mmacs(max_macs)}): the '
            f"cheapest, {cheapest['size']} px, needs "
            f"{_mmacs(cheapest['macs'])}; raise max_macs to at least "
            f"{cheapest['macs']}")
    candidates = [r for r in fit_macs if max_latency_ms is None
                  or ms.get(str(r['size']), math.inf) <= max_latency_ms]
    if not candidates:
        timed = [r for r in fit_macs if str(r['size']) in ms]
        if not timed:
            raise NoSizeFitsError(
                'no size has a measured latency (latency ms covers sizes '
                f'{sorted(ms)}); measure them with: {ADD_TABLE_COMMAND} '
                '--latency')
        fastest = min(timed, key=lambda r: (ms[str(r['size'])], r['size']))
        within = ('' if max_macs is None else
                  f' among the sizes within max_macs={max_macs:g}')
        raise NoSizeFitsError(
            f'no size fits max_latency_ms={max_latency_ms:g}{within}: the '
            f"fastest, {fastest['size']} px, takes "
            f"{ms[str(fastest['size'])]:.3f} ms (batch "
            f"{table['latency']['batch']}, on "
            f"{describe_machine(table['latency']['machine'])}); raise "
            f"max_latency_ms to at least {ms[str(fastest['size'])]:.3f}")
    top = max(r['top1'][r['best_mode']] for r in candidates)
    # Equal accuracy: fewer MACs, then the smaller size.
    tied = [r for r in candidates
            if r['top1'][r['best_mode']] >= top - _EQUAL]
    return _choice(table, min(tied, key=lambda r: (r['macs'], r['size'])), ms)


def _choice(table: dict, row: dict, ms: dict) -> dict:
    return dict(size=row['size'], inference_mode=row['best_mode'],
                macs=row['macs'], params=row['params'],
                top1=row['top1'][row['best_mode']], metric=table['metric'],
                latency_ms=ms.get(str(row['size'])), trained=row['trained'])


def _warn_other_machine(latency: dict) -> None:
    here = machine_info()
    there = latency['machine']
    differs = [k for k in here if k in there and here[k] != there[k]]
    if differs:
        print_log(
            f'the size table\'s latencies were measured on '
            f'{describe_machine(there)}; this machine is '
            f'{describe_machine(here)} (differs in {differs}): max_latency_ms '
            'is checked against the stored numbers. Re-measure here with: '
            f'{ADD_TABLE_COMMAND} --latency', logger='current',
            level=logging.WARNING)


# ---------------------------------------------------------- reading, writing
def read_size_table(checkpoint) -> dict:
    """The size table stored in a checkpoint.

    Args:
        checkpoint (str | dict): A checkpoint path (read with
            ``weights_only=True``, through mmengine's loaders) or a loaded
            checkpoint.

    Returns:
        dict: The validated table.

    Raises:
        SizeTableError: When the checkpoint has no table, saying which
            command adds one.
    """
    name = checkpoint if isinstance(checkpoint, str) else 'the checkpoint'
    if isinstance(checkpoint, str):
        checkpoint = CheckpointLoader.load_checkpoint(checkpoint,
                                                      map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or SIZE_TABLE_KEY not in meta:
        raise SizeTableError(
            f"{name} has no size table (meta['{SIZE_TABLE_KEY}']); add one "
            f'with: python tools/sweep_sizes.py CONFIG '
            f"{name if name != 'the checkpoint' else 'CKPT'} --save-table "
            'OUT.pth')
    return validate_size_table(meta[SIZE_TABLE_KEY])


def select_calibrated_state(state: Dict[str, torch.Tensor],
                            sizes: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The calibrated BN tensors (``*.calibrated.<size>.*``) of ``state``
    for ``sizes``."""
    keep = {str(s) for s in sizes}
    return {k: v for k, v in state.items()
            if (m := _CALIBRATED_KEY.search(k)) and m.group(1) in keep}


def write_size_table(out_file: str, state_dict: Dict[str, torch.Tensor],
                     table: dict, meta: Optional[dict] = None) -> str:
    """Save ``{'state_dict', 'meta'}`` with ``meta['size_table'] = table`` and
    check that it reads back under ``weights_only=True``.

    Args:
        out_file (str): Where to write.
        state_dict (dict): The model's tensors.
        table (dict): A size table.
        meta (dict, optional): Other meta data to keep (e.g. the source
            checkpoint's, with ``dataset_meta``).

    Returns:
        str: ``out_file``.
    """
    meta = dict(meta or {})
    meta[SIZE_TABLE_KEY] = copy.deepcopy(validate_size_table(table))
    out_dir = os.path.dirname(os.path.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    partial = f'{out_file}.partial'
    torch.save({'state_dict': state_dict, 'meta': meta}, partial)
    torch.load(partial, map_location='cpu', weights_only=True)
    os.replace(partial, out_file)  # never a half-written checkpoint
    return out_file


# ------------------------------------------------------------------ showing
def size_table_curves(table: dict, label: str = 'size table',
                      all_modes: bool = False) -> Dict[str, Dict[int, float]]:
    """Accuracy curves of a table for plotting: ``{name: {size: top1}}``.

    Args:
        table (dict): A size table.
        label (str): Name of the best-mode curve (what budgeted inference
            serves: each size at its best mode).
        all_modes (bool): Also one curve per measured mode,
            ``'<label>, <mode>'``; the best-mode curve is then named
            ``'<label>, best mode'`` and comes last, so that it is drawn on
            top of the curves it coincides with.
    """
    table = validate_size_table(table)
    curves = {}
    if all_modes:
        for mode in MODE_PREFERENCE:
            points = {r['size']: r['top1'][mode] for r in table['sizes']
                      if mode in r['top1']}
            if points:
                curves[f'{label}, {mode}'] = points
    best = {r['size']: r['top1'][r['best_mode']] for r in table['sizes']}
    curves[f'{label}, best mode' if all_modes else label] = best
    return curves


def size_table_markdown(table: dict) -> str:
    """A markdown table: a row per size (largest first), MMACs, params,
    accuracy per mode, the best mode and, when measured, milliseconds."""
    table = validate_size_table(table)
    modes = [m for m in MODE_PREFERENCE
             if any(m in r['top1'] for r in table['sizes'])]
    ms = (table.get('latency') or {}).get('ms')
    head = ['size', 'trained', 'MMACs', 'params (M)'] + modes + ['best mode']
    if ms:
        head.append(f"ms (batch {table['latency']['batch']})")
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in table['sizes']:
        cells = [str(row['size']), 'yes' if row['trained'] else '',
                 f"{row['macs'] / 1e6:.2f}", f"{row['params'] / 1e6:.3f}"]
        cells += [f"{row['top1'][m]:.2f}" if m in row['top1'] else ''
                  for m in modes]
        cells.append(row['best_mode'])
        if ms:
            value = ms.get(str(row['size']))
            cells.append('' if value is None else f'{value:.3f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
