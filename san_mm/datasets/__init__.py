from .fashion_mnist import prepare_fashion_mnist
from .transforms import *  # noqa: F401,F403

__all__ = ['prepare_fashion_mnist']
