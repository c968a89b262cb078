from .complexity import complexity_per_size, deployed_parameter_count
from .plot import plot_accuracy_vs_size

__all__ = ['complexity_per_size', 'deployed_parameter_count',
           'plot_accuracy_vs_size']
