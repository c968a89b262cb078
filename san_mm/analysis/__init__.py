from .complexity import (complexity_per_size, deployed_parameter_count,
                         image_channels)
from .plot import plot_accuracy_vs_size

__all__ = ['complexity_per_size', 'deployed_parameter_count', 'image_channels',
           'plot_accuracy_vs_size']
