from .fashion_mnist import (DataNotFoundError, FashionMNISTWithVal,
                            prepare_fashion_mnist)
from .transforms import *  # noqa: F401,F403

__all__ = ['DataNotFoundError', 'FashionMNISTWithVal', 'prepare_fashion_mnist']
