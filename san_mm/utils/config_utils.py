"""Config surgery shared by the loops, hooks and tools: find transforms, carry size overrides."""
import copy
from typing import Any, Iterator, List

from san_mm.models.utils import validate_sizes


def iter_transforms(cfg: Any, transform_type: str) -> Iterator[dict]:
    """Yield every dict with ``type == transform_type`` nested in ``cfg``
    (dataloader, dataset wrappers, pipelines)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == transform_type:
            yield cfg
        for value in cfg.values():
            yield from iter_transforms(value, transform_type)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from iter_transforms(value, transform_type)


def with_transform_arg(dataloader_cfg: dict, transform_type: str, key: str,
                       value: Any, what: str) -> dict:
    """A deep copy of ``dataloader_cfg`` with ``key=value`` set on every
    ``transform_type`` transform; raises if there is none."""
    cfg = copy.deepcopy(dataloader_cfg)
    found = list(iter_transforms(cfg, transform_type))
    if not found:
        raise ValueError(
            f'{what} needs a `{transform_type}` transform in the dataloader '
            f'pipeline to set its {key}; none found in {_pipeline_of(cfg)}. '
            f'Add {transform_type} to that pipeline, as '
            'configs/_base_/ does')
    for transform in found:
        transform[key] = copy.deepcopy(value)
    return cfg


def _pipeline_of(cfg: dict) -> List:
    pipelines = [t for t in _iter_key(cfg, 'pipeline')]
    return [[p.get('type') for p in pipe if isinstance(p, dict)]
            for pipe in pipelines] or ['<no pipeline>']


def _iter_key(cfg, key):
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            if k == key and isinstance(v, (list, tuple)):
                yield v
            else:
                yield from _iter_key(v, key)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            yield from _iter_key(v, key)


def apply_overrides(cfg, cfg_options: dict) -> None:
    """Carry top-level config variables given on the command line into the
    places that use them.

    Config variables are substituted when the file is parsed, so
    ``--cfg-options test_sizes=[...]`` only changes the top-level
    ``test_sizes``; this copies it to the multi-size loops (and likewise
    ``train_sizes`` to the backbone, ``ResolutionSample`` and a validation
    loop that evaluated the old training sizes, ``inference_mode`` to the
    backbone and ``PerSizeBNHook``, ``data_root`` to every dataset that has
    one, ``num_classes`` to the head and the data preprocessor).

    Args:
        cfg (mmengine.Config): The merged config (modified in place).
        cfg_options (dict): The ``--cfg-options`` given by the user.
    """
    cfg_options = cfg_options or {}
    if 'test_sizes' in cfg_options:
        sizes = list(validate_sizes(cfg.test_sizes, 'test_sizes'))
        cfg.test_sizes = sizes
        for loop in ('val_cfg', 'test_cfg'):
            if cfg.get(loop) and 'test_sizes' in cfg[loop]:
                cfg[loop]['test_sizes'] = sizes
    if 'train_sizes' in cfg_options:
        sizes = list(validate_sizes(cfg.train_sizes, 'train_sizes'))
        previous = list(validate_sizes(cfg.model.backbone.train_sizes))
        cfg.train_sizes = sizes
        cfg.model.backbone.train_sizes = sizes
        # validation at the training sizes follows them
        val_cfg = cfg.get('val_cfg') or {}
        if 'test_sizes' in val_cfg and 'test_sizes' not in cfg_options and \
                list(validate_sizes(val_cfg['test_sizes'])) == previous:
            val_cfg['test_sizes'] = sizes
        for transform in iter_transforms(cfg.get('train_dataloader'),
                                         'ResolutionSample'):
            transform['sizes'] = sizes
    if 'inference_mode' in cfg_options:
        cfg.model.backbone.inference_mode = cfg.inference_mode
        for hook in cfg.get('custom_hooks') or []:
            if hook.get('type') == 'PerSizeBNHook':
                hook['inference_mode'] = cfg.inference_mode
    if 'num_classes' in cfg_options:
        head = cfg.model.get('head')
        if isinstance(head, dict) and 'num_classes' in head:
            head['num_classes'] = cfg.num_classes
        for preprocessor in (cfg.get('data_preprocessor'),
                             cfg.model.get('data_preprocessor')):
            if isinstance(preprocessor, dict) and 'num_classes' in preprocessor:
                preprocessor['num_classes'] = cfg.num_classes
    if 'data_root' in cfg_options:
        for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            for dataset in datasets_of(cfg.get(name)):
                dataset['data_root'] = cfg.data_root


def datasets_of(loader) -> Iterator[dict]:
    """Every dataset dict with a ``data_root`` in a dataloader config
    (through dataset wrappers)."""
    dataset = (loader or {}).get('dataset')
    stack = [dataset] if isinstance(dataset, dict) else []
    while stack:
        dataset = stack.pop()
        if 'data_root' in dataset:
            yield dataset
        inner = dataset.get('datasets') or [dataset.get('dataset')]
        stack += [d for d in inner if isinstance(d, dict)]
