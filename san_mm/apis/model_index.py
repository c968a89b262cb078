"""Make the project's models known to mmpretrain's model hub (``list_models('san*')``,
``get_model('san-resnet18_8xb32_in1k')``)."""
import os.path as osp
from typing import Optional

MODEL_INDEX = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))), 'model-index.yml')


def register_model_index(path: Optional[str] = None) -> bool:
    """Register ``model-index.yml`` (next to the package in a source checkout
    or editable install) with ``mmpretrain.apis.ModelHub``.

    mmpretrain parses its own (large) index lazily, on the first
    ``list_models`` / ``get_model(name)``; ours is added at that same moment,
    so importing san_mm stays cheap.

    Returns:
        bool: Whether the index will be registered (False where the file is
        not shipped, e.g. a wheel without the configs).
    """
    from mmpretrain.apis import ModelHub
    path = path or MODEL_INDEX
    if not osp.isfile(path):
        return False
    original = ModelHub._register_mmpretrain_models.__func__
    if getattr(original, 'san_mm_index', None) == path:
        return True

    def register_with_san_mm(cls):
        original(cls)
        if not cls.has('san-resnet18_8xb32_in1k'):
            cls.register_model_index(path, config_prefix=osp.dirname(path))

    register_with_san_mm.san_mm_index = path
    ModelHub._register_mmpretrain_models = classmethod(register_with_san_mm)
    return True
