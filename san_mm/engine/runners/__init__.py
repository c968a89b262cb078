from .multi_size_loops import MultiSizeTestLoop, MultiSizeValLoop

__all__ = ['MultiSizeTestLoop', 'MultiSizeValLoop']
