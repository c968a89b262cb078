"""``torch.compile`` for SAN models in mmengine's runner: one static graph per input size.

mmengine compiles ``train_step`` when the config sets ``compile`` (``True`` or a dict of
``torch.compile`` arguments); evaluation is never compiled by mmengine. SAN needs two more things
for compilation to pay off:

* **Static shapes.** A SAN network picks its kernels and BN from the input size, so a compiled
  graph is specialised to one size anyway. With torch's default ``dynamic=None`` the second size
  seen turns on symbolic shapes, which then get specialised again: extra recompiles and slower
  graphs. ``dynamic=False`` (the default here, unless the config sets ``dynamic``) gives exactly
  one graph per size (and one per batch size, e.g. a smaller last batch).
* **Room for those graphs.** Dynamo recompiles a function at most ``recompile_limit`` times (8)
  and then runs it eagerly with a warning; evaluating 11 sizes needs more.

:class:`~san_mm.engine.runners.ResumableEpochBasedTrainLoop` and the multi-size val/test loops
call :func:`prepare_compile`; the multi-size loops also compile ``val_step`` / ``test_step``, so
``tools/test.py --compile`` compiles evaluation too.
"""
from typing import Optional

import torch
from mmengine.logging import print_log


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
    """Make the runner's ``compile`` option SAN-ready: ``dynamic=False``
    unless set, and room for :func:`graphs_for_sizes` graphs.

    Returns:
        dict | None: The ``torch.compile`` arguments, None when off.
    """
    options = compile_options(runner.cfg)
    if options is None:
        return None
    if runner.cfg.get('compile') != options:
        runner.cfg.compile = options  # what mmengine's train_step compile reads
        print_log(f'compile: {options} (one static graph per input size)',
                  logger='current')
    allow_graphs(graphs_for_sizes(num_sizes))
    return options


def compile_step(runner, step: str, options: dict) -> None:
    """Compile ``runner.model.<step>`` (``val_step`` / ``test_step``) once."""
    model = runner.model
    function = getattr(model, step)
    if getattr(function, '_san_compiled', False):
        return
    compiled = torch.compile(function, **options)
    compiled._san_compiled = True
    setattr(model, step, compiled)
