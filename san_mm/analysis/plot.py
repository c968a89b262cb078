"""Accuracy-vs-size / accuracy-vs-FLOPs plots (PNG)."""
from typing import Dict, List, Optional, Sequence


def plot_accuracy_vs_size(curves: Dict[str, Dict[int, float]],
                          out_file: str,
                          flops: Optional[Dict[int, float]] = None,
                          train_sizes: Sequence[int] = (),
                          title: str = '',
                          metric: str = 'top-1 accuracy (%)') -> str:
    """Plot one line per method: accuracy against input size and, when
    ``flops`` is given, against MACs in a second panel.

    Args:
        curves (dict): ``{method: {size: accuracy}}``.
        out_file (str): PNG path.
        flops (dict, optional): ``{size: multiply-accumulates}``.
        train_sizes (Sequence[int]): Marked with dotted vertical lines.
        title (str): Figure title.

    Returns:
        str: ``out_file``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = 2 if flops else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2),
                             squeeze=False)
    ax = axes[0][0]
    for size in train_sizes:
        ax.axvline(size, color='0.85', linestyle=':', zorder=0)
    for name, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker='o', label=name)
    ax.set_xlabel('input size (px); dotted: training sizes')
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if flops:
        ax = axes[0][1]
        for name, points in curves.items():
            xs = sorted(s for s in points if s in flops)
            ax.plot([flops[x] / 1e6 for x in xs], [points[x] for x in xs],
                    marker='o', label=name)
        ax.set_xlabel('MMACs per image')
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)
    return out_file


def sizes_of(metrics: Dict, name: str = 'accuracy/top1') -> Dict[int, float]:
    """``{size: value}`` from a multi-size metrics dict (``name@size``)."""
    out = {}
    for key, value in metrics.items():
        prefix, _, size = key.rpartition('@')
        if prefix == name and size.isdigit():
            out[int(size)] = float(value)
    return out


__all__: List[str] = ['plot_accuracy_vs_size', 'sizes_of']
