"""Make the project's models known to mmpretrain's model hub (``list_models('san*')``,
``get_model('san-resnet18_8xb32_in1k')``)."""
import os.path as osp
from typing import Optional

MODEL_INDEX = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))), 'model-index.yml')

_registered = set()


def register_model_index(path: Optional[str] = None) -> bool:
    """Register ``model-index.yml`` (next to the package in a source checkout
    or editable install) with ``mmpretrain.apis.ModelHub``, once per process
    (a few milliseconds: the index is small).

    Returns:
        bool: Whether the index is registered (False where the file is not
        shipped, e.g. a wheel without the configs).
    """
    from mmpretrain.apis import ModelHub
    path = path or MODEL_INDEX
    if not osp.isfile(path):
        return False
    if path not in _registered:
        ModelHub.register_model_index(path, config_prefix=osp.dirname(path))
        _registered.add(path)
    return True
