"""Turn a multi-size metrics dict (``name@size``) into tables."""
from collections import OrderedDict
from typing import Dict, List, Tuple


def split_size_metrics(metrics: Dict) -> Tuple[List[str], Dict[str, Dict]]:
    """``{'accuracy/top1@224': v, ...}`` -> (metric names, {size: {name: v}}).

    Sizes keep the order in which they first appear; ``mean`` comes last.
    """
    names: List[str] = []
    rows: Dict[str, Dict] = OrderedDict()
    for key, value in metrics.items():
        if '@' not in key:
            continue
        name, size = key.rsplit('@', 1)
        if name not in names:
            names.append(name)
        rows.setdefault(size, {})[name] = value
    if 'mean' in rows:
        rows.move_to_end('mean')
    return names, rows


def format_size_table(metrics: Dict, floatfmt: str = '.2f') -> str:
    """A markdown table with a row per size and a column per metric."""
    names, rows = split_size_metrics(metrics)
    if not rows:
        return '\n'.join(f'{k}: {v}' for k, v in metrics.items())
    lines = ['| size | ' + ' | '.join(names) + ' |',
             '|---|' + '---|' * len(names)]
    for size, values in rows.items():
        cells = []
        for name in names:
            value = values.get(name, '')
            cells.append(format(value, floatfmt)
                         if isinstance(value, float) else str(value))
        lines.append(f'| {size} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def format_mode_table(results: Dict[str, Dict],
                      metric: str = 'accuracy/top1',
                      train_sizes=(),
                      flops: Dict[int, float] = None,
                      floatfmt: str = '.2f') -> str:
    """A markdown table with a row per size and a column per inference mode.

    Args:
        results (dict): ``{mode: multi-size metrics dict}``.
        metric (str): The metric to show.
        train_sizes: Sizes marked as trained on.
        flops (dict, optional): ``{size: MACs}`` for an MMACs column.
    """
    modes = list(results)
    per_mode = {mode: {int(size): values[metric]
                       for size, values in split_size_metrics(m)[1].items()
                       if size.isdigit() and metric in values}
                for mode, m in results.items()}
    sizes = sorted({s for values in per_mode.values() for s in values},
                   reverse=True)
    head = ['size', 'trained']
    if flops:
        head.append('MMACs')
    lines = ['| ' + ' | '.join(head + modes) + ' |',
             '|' + '---|' * (len(head) + len(modes))]
    for size in sizes:
        cells = [str(size), 'yes' if size in train_sizes else '']
        if flops:
            cells.append(f'{flops[size] / 1e6:.2f}' if size in flops else '')
        for mode in modes:
            value = per_mode[mode].get(size)
            cells.append('' if value is None else format(value, floatfmt))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
