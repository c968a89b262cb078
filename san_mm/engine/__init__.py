from .hooks import *  # noqa: F401,F403
from .runners import *  # noqa: F401,F403
from .model_wrappers import SANDistributedDataParallel  # noqa: F401
