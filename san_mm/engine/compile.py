"""``torch.compile`` for SAN models in mmengine's runner: one static graph per input size.

mmengine's ``compile`` option (``True`` or a dict of ``torch.compile`` arguments) compiles the
whole ``train_step``, optimizer wrapper included, and never compiles evaluation. For a SAN model
that goes wrong twice: the OptimWrapper's iteration counter is a Python int that the graph guards
on, so ``train_step`` recompiles at every iteration (measured: 19x slower than eager on the
Fashion-MNIST step); and a test over 11 sizes runs eagerly. With the SAN loops
(``ResumableEpochBasedTrainLoop``, ``MultiSizeValLoop``, ``MultiSizeTestLoop``) the option
compiles the **backbone** instead (``nn.Module.compile``: the module's call, hooks included),
for training and evaluation alike, while the data preprocessor, head, losses and optimizer step
stay eager (little work, and state that changes every iteration):

* **Static shapes.** A SAN network picks its kernels and BN from the input size, so a compiled
  graph is specialised to one size anyway. With torch's default ``dynamic=None`` the second size
  seen turns on symbolic shapes, which then get specialised again: extra recompiles and slower
  graphs. ``dynamic=False`` (the default here, unless the config sets ``dynamic``) gives exactly
  one graph per size, mode (train / eval) and batch size (e.g. a smaller last batch).
* **Room for those graphs.** Dynamo recompiles a function at most ``recompile_limit`` times (8)
  and then runs it eagerly with a warning; 5 training sizes plus 11 test sizes need more.
"""
from typing import Optional

import torch
from mmengine.logging import print_log

from .utils import unwrap_model


def compile_options(cfg) -> Optional[dict]:
    """The config's ``compile`` as ``torch.compile`` keyword arguments with
    SAN's defaults (``dynamic=False``), or None when compilation is off.

    Raises:
        TypeError: for a ``compile`` value that is neither a bool nor a dict.
    """
    value = cfg.get('compile', None)
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise TypeError(
            f'compile must be True, False or a dict of torch.compile '
            f'arguments (e.g. dict(backend="inductor", mode="max-autotune")), '
            f'got {value!r}')
    options = dict(value)
    options.setdefault('dynamic', False)
    return options


def allow_graphs(num_graphs: int) -> None:
    """Let dynamo keep at least ``num_graphs`` compiled graphs per function
    (raises ``torch._dynamo.config.recompile_limit``, never lowers it)."""
    config = torch._dynamo.config
    name = 'recompile_limit' if hasattr(config, 'recompile_limit') \
        else 'cache_size_limit'
    if getattr(config, name) < num_graphs:
        setattr(config, name, num_graphs)


def graphs_for_sizes(num_sizes: int) -> int:
    """Graphs a compiled step may need for ``num_sizes`` sizes: one per size
    and batch shape (full batches and a smaller last one), plus room for
    the train / eval variants and a few guard changes (inference mode,
    calibrated statistics)."""
    return 4 * num_sizes + 8


def prepare_compile(runner, num_sizes: int) -> Optional[dict]:
    """Compile the runner's SAN backbone if the config asks for it: with
    ``dynamic=False`` unless set, room for :func:`graphs_for_sizes` graphs,
    and mmengine's own ``train_step`` compilation turned off (the config's
    ``compile`` set to False once the backbone is compiled; a later loop of
    the same runner finds the backbone compiled and makes room for its
    sizes' graphs).

    Returns:
        dict | None: The ``torch.compile`` arguments, None when off.
    """
    model = unwrap_model(runner)
    backbone = getattr(model, 'backbone', None)
    options = compile_options(runner.cfg)
    if options is None:
        if backbone is not None and backbone._compiled_call_impl is not None:
            allow_graphs(graphs_for_sizes(num_sizes))
        return None
    # mmengine reads this right before training: its train_step
    # compilation would recompile at every iteration (see above).
    runner.cfg.compile = False
    print_log(f'compile: the backbone with {options}, one static graph per '
              'input size; preprocessing, head, losses and the optimizer '
              'step stay eager', logger='current')
    allow_graphs(graphs_for_sizes(num_sizes))
    compile_backbone(model, options)
    return options


def compile_backbone(model, options: dict) -> None:
    """``model.backbone.compile(**options)`` once (``nn.Module.compile``:
    state dict, ``deepcopy`` and hooks are unchanged; a deep copy, e.g. an
    EMA model, runs eagerly)."""
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise TypeError(
            f'compile with the SAN loops needs a model with a backbone, got '
            f'{type(model).__name__}; set compile=None, or torch.compile the '
            'model yourself')
    if backbone._compiled_call_impl is None:
        backbone.compile(**options)
