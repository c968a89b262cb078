"""torch.compile: no graph breaks, one graph per size, compiled equals eager (CPU)."""
import logging

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch._dynamo.testing import CompileCounter

from san_mm.engine.compile import (allow_graphs, compile_options,
                                   graphs_for_sizes)
from san_mm.models.utils import INFERENCE_MODES
from tests.conftest import tiny_cfg

pytestmark = pytest.mark.long  # run first (conftest.py)

TRAIN_SIZES = [32, 28, 24, 20, 16]
UNSEEN_SIZES = [30, 26, 18]
# The Fashion-MNIST layout (3x3 stride-2 stem, no max-pool: stride 16).
RESNET = dict(type='MetaResNet', depth=18, stem_channels=4, base_channels=4,
              stem_kernel_size=3, stem_pool=False, train_sizes=TRAIN_SIZES,
              meta_init='kaiming')
# Its first two stages (one without, one with a downsampling block): the
# tests of compiling a whole classifier trace this, at half the cost.
TWO_STAGES = dict(num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(1, ))
SHALLOW_RESNET = dict(RESNET, **TWO_STAGES)
MOBILENET = dict(type='MetaMobileNetV2', widen_factor=0.25,
                 train_sizes=[32, 24], meta_init='kaiming')


def classifier(backbone, channels):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='SANClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=channels),
        loss_reduction='mean'))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('backbone', [RESNET, MOBILENET],
                         ids=['MetaResNet', 'MetaMobileNetV2'])
def test_backbones_trace_without_graph_breaks(backbone):
    net = MODELS.build(backbone).eval()
    with torch.no_grad():
        for size in (32, 26):  # a training size and an unseen one
            explained = torch._dynamo.explain(net)(torch.rand(2, 3, size, size))
            assert explained.graph_break_count == 0, explained.break_reasons
            assert explained.graph_count == 1


def test_training_step_traces_without_graph_breaks():
    model = classifier(SHALLOW_RESNET, 8).train()
    inputs = [torch.rand(2, 3, s, s) for s in TRAIN_SIZES]
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    explained = torch._dynamo.explain(model.loss)(inputs, samples)
    assert explained.graph_break_count == 0, explained.break_reasons
    # The whole multi-size loss, distillation included, is one graph.
    assert explained.graph_count == 1


def test_compile_options_default_to_static_shapes():
    assert compile_options(Config(dict())) is None
    assert compile_options(Config(dict(compile=False))) is None
    assert compile_options(Config(dict(compile=True))) == dict(dynamic=False)
    assert compile_options(Config(dict(compile=dict(
        backend='eager', dynamic=True)))) == dict(backend='eager', dynamic=True)
    with pytest.raises(TypeError, match="compile must be True.*got 'yes'"):
        compile_options(Config(dict(compile='yes')))


def test_one_graph_per_size_and_mode_without_recompile_warnings(caplog):
    """Training at every size, then evaluation at every training and unseen
    size in every mode: each (size, mode, train/eval) compiles once, and
    nothing falls back to eager for hitting dynamo's recompile limit."""
    model = classifier(SHALLOW_RESNET, 8)
    counter = CompileCounter()
    allow_graphs(graphs_for_sizes(len(TRAIN_SIZES) + len(UNSEEN_SIZES)))
    compiled = torch.compile(model, backend=counter, dynamic=False)
    expected = 0
    with caplog.at_level(logging.WARNING, logger='torch._dynamo'):
        model.train()
        for _ in range(2):
            for size in TRAIN_SIZES:
                compiled(torch.rand(2, 3, size, size), mode='tensor')
        expected += len(TRAIN_SIZES)
        assert counter.frame_count == expected
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                for size in TRAIN_SIZES + UNSEEN_SIZES:
                    compiled(torch.rand(2, 3, size, size), mode='tensor')
            expected += len(TRAIN_SIZES) + len(UNSEEN_SIZES)
            assert counter.frame_count == expected
            for mode in ('ideal', 'data_free'):  # proxy ran above
                model.backbone.inference_mode = mode
                for size in UNSEEN_SIZES:
                    compiled(torch.rand(2, 3, size, size), mode='tensor')
                expected += len(UNSEEN_SIZES)
                assert counter.frame_count == expected
    assert expected > 8  # more than dynamo's default limit
    assert not [r for r in caplog.records if 'recompile' in r.getMessage()]


def calibrate(model, size):
    with torch.no_grad(), model.backbone.calibrating(size):
        for seed in range(2):
            torch.manual_seed(seed)
            model.backbone(torch.rand(4, 3, size, size))


def trained_like(model, seed=0):
    """``model`` with every private BN set and generated conv's A drawn at
    random, as after training: freshly built, all sets are equal and A is 0,
    so the size, BN set and inference mode would not change the output."""
    generator = torch.Generator().manual_seed(seed)

    def draw(like, scale=1.0, offset=0.0, uniform=False):
        values = (torch.rand if uniform else torch.randn)(
            like.shape, generator=generator)
        return values * scale + offset

    with torch.no_grad():
        for private_bn in model.backbone.private_bns():
            for bn_set in private_bn.sets:
                bn_set.weight.copy_(draw(bn_set.weight, 1, 0.5, uniform=True))
                bn_set.bias.copy_(draw(bn_set.bias, 0.1))
                bn_set.running_mean.copy_(draw(bn_set.running_mean, 0.1))
                bn_set.running_var.copy_(
                    draw(bn_set.running_var, 1, 0.5, uniform=True))
        for conv in model.backbone.meta_convs():
            if conv.weight_residual is not None:
                conv.weight_residual.copy_(
                    draw(conv.weight_residual, float(conv.weight.std())))
    return model


@pytest.mark.parametrize('mode', INFERENCE_MODES)
def test_every_inference_mode_compiled_equals_eager(mode):
    """aot_eager runs the traced, functionalised graph: what inductor
    compiles. Equal to eager up to float32 rounding of reordered ops."""
    model = trained_like(classifier(SHALLOW_RESNET, 8)).eval()
    model.backbone.inference_mode = mode
    if mode == 'calibrated':
        calibrate(model, 26)
    compiled = torch.compile(model, backend='aot_eager', dynamic=False)
    with torch.no_grad():
        for size in (28, 26):
            x = torch.rand(2, 3, size, size)
            expected = model(x, mode='tensor')
            got = compiled(x, mode='tensor')
            # Same ops in the same order: float32 rounding at most.
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def around_an_update(call, model, x):
    """``call(x)`` without gradients, before and after an in-place update of
    every generated conv's A (the kind of change an optimiser step makes)."""
    with torch.no_grad():
        before = call(x)
        for conv in model.backbone.meta_convs():
            conv.weight_residual.add_(0.05)
        return before, call(x)


def test_kernels_are_never_stale_when_compiled():
    """No kernel cache under compile: an optimiser step between two compiled
    calls is seen by the second (B + s * A is part of the graph)."""
    model = classifier(SHALLOW_RESNET, 8).eval()
    compiled = torch.compile(model, backend='aot_eager', dynamic=False)
    x = torch.rand(2, 3, 26, 26)
    before, after = around_an_update(
        lambda x: compiled(x, mode='tensor'), model, x)
    with torch.no_grad():
        torch.testing.assert_close(after, model(x, mode='tensor'),
                                   rtol=1e-5, atol=1e-6)
    assert not torch.allclose(before, after)


def test_serving_with_guard_evaluation_skipped_picks_each_sizes_graph():
    """docs/compile.md's batch-1 serving recipe: compile every size first, then
    run under ``set_stance(skip_guard_eval_unsafe=True)``, where dynamo checks
    only the guards that tell its cached graphs apart. SAN derives its scale
    state from the input inside the graph, so the input shape is such a
    guard: each size still runs its own graph (a training size and an unseen
    one, in a new order), equal to eager, and nothing recompiles."""
    model = classifier(MOBILENET, 1280).eval()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, dynamic=False)
    inputs = {size: torch.rand(1, 3, size, size) for size in (32, 26, 24)}
    with torch.no_grad():
        for x in inputs.values():
            compiled(x, mode='tensor')
        assert counter.frame_count == len(inputs)
        with torch.compiler.set_stance('default',
                                       skip_guard_eval_unsafe=True):
            for size in (24, 32, 26, 32):
                got = compiled(inputs[size], mode='tensor')
                torch.testing.assert_close(
                    got, model(inputs[size], mode='tensor'),
                    rtol=1e-5, atol=1e-6)
    assert counter.frame_count == len(inputs)


def test_inductor_output_equals_eager():
    """The real compiler (C++ kernels on CPU) on a two-stage MetaResNet at an
    unseen size in ideal mode (generated kernels at a new encoding)."""
    net = MODELS.build(dict(SHALLOW_RESNET, inference_mode='ideal')).eval()
    compiled = torch.compile(net, dynamic=False)
    x = torch.rand(2, 3, 26, 26)
    with torch.no_grad():
        expected, got = net(x)[0], compiled(x)[0]
    error = ((got - expected).norm() / expected.norm()).item()
    # Inductor fuses and reorders float32 sums: measured 6e-7 relative for
    # this net (and the full ResNet-18); the bound is 1e-5.
    assert error <= 1e-5


# Each mode and each export kind once: a training size through the non-strict
# (Python) tracer, an unseen size's blended BN through dynamo (strict).
@pytest.mark.parametrize('mode,size,strict', [('proxy', 28, False),
                                              ('data_free', 26, True)],
                         ids=['proxy-28-non-strict', 'data_free-26-strict'])
def test_torch_export_at_one_size_equals_eager(mode, size, strict):
    """torch.export gives a program for one size and mode that equals eager:
    what AOTInductor compiles for deployment. Strict export traces with dynamo, which refuses graph breaks;
    non-strict (the default) runs the forward on fake tensors, which must not
    reach the eager kernel cache. The size is baked in: another one is
    refused, not silently run."""
    model = classifier(MOBILENET, 1280).eval()
    model.backbone.inference_mode = mode
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        program = torch.export.export(model, (x, ), strict=strict)
        assert not [conv for conv in model.backbone.meta_convs()
                    if conv._kernel_cache]
        expected = model(x, mode='tensor')
        got = program.module()(x)
        # The traced ATen ops run unfused, in eager's order: float32
        # rounding at most (as for aot_eager above).
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(Exception, match='size|shape'):
            program.module()(torch.rand(1, 3, 32, 32))


def run_tiny(tiny_config, image_folder, work_dir, compile_cfg):
    from mmengine.runner import Runner
    cfg = tiny_cfg(tiny_config, image_folder, work_dir)
    cfg.model.backbone.update(TWO_STAGES)
    cfg.model.head.in_channels = 8
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True,
                               T_max=1, convert_to_iter_based=True)
    cfg.test_cfg.test_sizes = [32, 28, 18]  # 28: unseen
    cfg.custom_hooks = [dict(type='PerSizeBNHook', inference_mode='data_free')]
    cfg.compile = compile_cfg
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return runner, metrics


def test_runner_compile_option_compiles_the_backbone(tiny_config,
                                                     image_folder, tmp_path,
                                                     caplog, runner_on_cpu):
    """`compile` in a SAN config: training and testing run the compiled
    backbone (mmengine's train_step compilation is turned off: it would
    recompile every iteration on the OptimWrapper's counter), one graph per
    size, with the results of the eager run (on the CPU, where the two runs
    are bit for bit the same, measured; on CUDA cuDNN's BN runs eagerly and
    the native one in the traced graph)."""
    with caplog.at_level(logging.WARNING, logger='torch._dynamo'):
        runner, metrics = run_tiny(tiny_config, image_folder,
                                   tmp_path / 'compiled',
                                   dict(backend='aot_eager'))
    model = runner.model
    assert model.backbone._compiled_call_impl is not None
    assert runner.cfg.compile is False  # mmengine left train_step alone
    assert not [r for r in caplog.records if 'recompile' in r.getMessage()]
    eager_runner, eager_metrics = run_tiny(tiny_config, image_folder,
                                           tmp_path / 'eager', None)
    assert eager_runner.model.backbone._compiled_call_impl is None
    # Accuracy on 12 images is a multiple of 8.33: equal, not merely close.
    assert metrics == eager_metrics
    # aot_eager runs the same float32 ops, some reordered (functionalised
    # in-place adds); after 6 SGD steps the weights agree to rounding.
    compiled_state = model.state_dict()
    for name, value in eager_runner.model.state_dict().items():
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-4,
                                   atol=1e-5, msg=name)
