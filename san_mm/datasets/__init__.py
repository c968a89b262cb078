from .fashion_mnist import FashionMNISTWithVal, prepare_fashion_mnist
from .transforms import *  # noqa: F401,F403

__all__ = ['FashionMNISTWithVal', 'prepare_fashion_mnist']
