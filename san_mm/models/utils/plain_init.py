"""Start a SAN network from a plain ResNet / MobileNetV2 checkpoint (e.g. mmpretrain's model zoo).

Every generated conv gets B = the pretrained kernel and A = 0, every private BN set gets the
pretrained BN, everything else (stem conv, head) is copied where the shapes match. At every size the
SAN network then computes exactly the pretrained model's function, and fine-tuning makes it
resolution-adaptive. SAN backbones mirror mmpretrain's module names, so the mapping is by name.
"""
import re
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import _load_checkpoint

_SET = re.compile(r'\.sets\.\d+\.')


def plain_source_key(key: str) -> str:
    """The plain-model key a SAN key takes its value from."""
    return _SET.sub('.', key)


def plain_to_san_state_dict(module: nn.Module, plain: Dict[str, torch.Tensor]
                            ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """SAN state dict for ``module`` built from a plain state dict.

    Returns:
        tuple: (state dict to load, keys kept from ``module`` itself because
        the plain model has no tensor of that name and shape, e.g. a head
        with another number of classes).
    """
    out, kept = {}, []
    for key, current in module.state_dict().items():
        if '.calibrated.' in key:
            out[key] = current
        elif key.endswith('weight_residual'):
            out[key] = torch.zeros_like(current)  # A = 0: no scale residual
        else:
            source = plain.get(plain_source_key(key))
            if source is not None and source.shape == current.shape:
                out[key] = source.to(current.dtype)
            else:
                out[key] = current
                kept.append(key)
    return out, kept


def load_plain_into_san(module: nn.Module, plain: Dict[str, torch.Tensor],
                        required_prefix: str = '',
                        source: str = 'the checkpoint') -> List[str]:
    """Load ``plain`` into ``module`` (a SAN backbone or classifier).

    ``source`` names the checkpoint in error messages.

    Raises:
        KeyError: if a key under ``required_prefix`` (e.g. ``'backbone.'``)
            finds no plain tensor: the architectures differ.

    Returns:
        list[str]: keys left as they were (head of another shape, ...).
    """
    if any('.sets.' in k for k in plain):
        # a one-size SAN network without meta network (e.g. the single-size
        # baselines) is a plain network stored with one BN set
        if any(re.search(r'\.sets\.[1-9]\d*\.', k) for k in plain) or any(
                k.endswith('weight_residual') for k in plain):
            num_sets = 1 + max(
                (int(m.group(1)) for k in plain
                 for m in [re.search(r'\.sets\.(\d+)\.', k)] if m),
                default=0)
            meta = any(k.endswith('weight_residual') for k in plain)
            raise ValueError(
                f'{source} is a SAN model ({num_sets} private BN set'
                f'{"s" if num_sets > 1 else ""}'
                f'{", generated convs" if meta else ""}), not a plain '
                "network: load it with init_cfg=dict(type='Pretrained', "
                'checkpoint=...) or load_from instead of PretrainedFromPlain, '
                'with the train_sizes and use_meta_network it was trained '
                'with')
        plain = {plain_source_key(k): v for k, v in plain.items()}
    state, kept = plain_to_san_state_dict(module, plain)
    missing = [k for k in kept if k.startswith(required_prefix)
               and not k.startswith('data_preprocessor')]
    if missing:
        if not hasattr(module, 'backbone') and any(
                k.startswith('backbone.') for k in plain):
            hint = ("its keys start with 'backbone.' (a classifier "
                    "checkpoint): add prefix='backbone.' to the backbone's "
                    'init_cfg')
        else:
            hint = ('check that the config builds the same architecture '
                    '(depth / widen_factor, stem and base channels) as the '
                    'plain model')
        raise KeyError(
            f'{len(missing)} tensors of the SAN model have no counterpart of '
            f'the same shape in {source} (different architecture or '
            f'width?), e.g. {missing[:5]} <- '
            f'{[plain_source_key(k) for k in missing[:5]]}; {hint}')
    module.load_state_dict(state, strict=True)
    return kept


@WEIGHT_INITIALIZERS.register_module(name='PretrainedFromPlain')
class PretrainedFromPlainInit(PretrainedInit):
    """``init_cfg=dict(type='PretrainedFromPlain', checkpoint=...)``: initialise a
    SAN backbone (``prefix='backbone.'`` for classifier checkpoints) or a whole
    ``SANClassifier`` from a plain ResNet / MobileNetV2 checkpoint."""

    def __call__(self, module: nn.Module) -> None:
        checkpoint = _load_checkpoint(self.checkpoint,
                                      map_location=self.map_location)
        state = checkpoint.get('state_dict', checkpoint)
        if self.prefix:
            state = {k[len(self.prefix):]: v for k, v in state.items()
                     if k.startswith(self.prefix)}
        # A classifier's backbone must be fully covered; a backbone (loaded
        # with or without prefix) entirely.
        whole_model = hasattr(module, 'backbone') and not self.prefix
        kept = load_plain_into_san(
            module, state, required_prefix='backbone.' if whole_model else '',
            source=f'checkpoint {self.checkpoint}')
        print_log(f'initialised {type(module).__name__} from plain checkpoint '
                  f'{self.checkpoint} (B = kernel, A = 0, every BN set = the '
                  f'BN); kept as built: {kept or "nothing"}', logger='current')

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load from {self.checkpoint}'


#: Initialisers that load a checkpoint: run after every other initialisation.
LOADING_INITS = ('Pretrained', 'PretrainedFromPlain')


def init_weights_plain_last(module: nn.Module, init_weights) -> None:
    """Run ``init_weights`` (the module's own initialisation), then the
    checkpoint-loading initialisers of ``module.init_cfg`` (``Pretrained``,
    ``PretrainedFromPlain``) last, as mmengine does for ``Pretrained``:
    nothing initialised afterwards may overwrite the loaded weights."""
    from mmengine.model import initialize
    original = module.init_cfg
    cfgs = original if isinstance(original, list) else [original]
    loading = [c for c in cfgs if isinstance(c, dict)
               and c.get('type') in LOADING_INITS + (PretrainedFromPlainInit, )]
    if not loading:
        return init_weights()
    others = [c for c in cfgs if c is not None and c not in loading]
    module.init_cfg = others or None
    try:
        init_weights()
    finally:
        module.init_cfg = original
    for cfg in loading:
        initialize(module, cfg)
