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
