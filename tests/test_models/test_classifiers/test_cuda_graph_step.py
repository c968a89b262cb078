import copy

import pytest
import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

SIZES = (16, 12)
cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='CUDA graphs need a GPU')


def build(**kwargs):
    cfg = dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', depth=18, in_channels=1,
                      stem_channels=4, base_channels=4, stem_kernel_size=3,
                      stem_stride=1, stem_pool=False, train_sizes=list(SIZES)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32),
        data_preprocessor=dict(mean=[128.0], std=[64.0], to_rgb=False),
        loss_reduction='mean', cuda_graph_step=True)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def data_batch(seed, n=4):
    """What the dataloader gives the model: one uint8 batch per size."""
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (n, 1, s, s), generator=generator,
                            dtype=torch.uint8) for s in SIZES]
    labels = torch.randint(0, 3, (n, ), generator=generator)
    return dict(inputs=inputs, data_samples=[
        DataSample().set_gt_label(int(label)) for label in labels])


def sgd(model):
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05,
                                        momentum=0.9, weight_decay=1e-4))


@pytest.mark.parametrize('options, named', [
    (dict(num_sampled_sizes=0), 'num_sampled_sizes=0'),
    (dict(backward_per_size=True), 'backward_per_size=True'),
])
def test_refuses_model_settings_a_graph_cannot_replay(options, named):
    with pytest.raises(ValueError, match=named.replace('=', '.')):
        build(**options)


def test_refuses_accumulation_other_wrappers_a_compiled_backbone_and_the_cpu():
    model = build()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
                           accumulative_counts=2)
    with pytest.raises(ValueError, match='accumulative_counts=2'):
        model.train_step(data_batch(0), wrapper)

    class ClippingWrapper(OptimWrapper):
        pass

    with pytest.raises(ValueError, match='ClippingWrapper'):
        model.train_step(data_batch(0), ClippingWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1)))
    # AMP passes the wrapper checks, and only the CPU is refused (mmengine's
    # AMP wrapper cannot be built without a GPU; the checks read its type
    # and accumulation count)
    amp = AmpOptimWrapper.__new__(AmpOptimWrapper)
    amp._accumulative_counts = 1
    with pytest.raises(RuntimeError, match='model is on cpu'):
        model.cuda_graph_step.check_supported(amp)
    model.backbone.compile()  # sets the compiled call; compiles nothing yet
    with pytest.raises(ValueError, match='compiled backbone'):
        model.train_step(data_batch(0), sgd(model))
    fresh = build()
    with pytest.raises(RuntimeError, match='model is on cpu'):
        fresh.train_step(data_batch(0), sgd(fresh))


def test_a_copy_starts_without_the_graph_and_steps_its_own_model():
    model = build()
    model.cuda_graph_step._warm = 2
    twin = copy.deepcopy(model)
    assert twin.cuda_graph_step.model is twin
    assert twin.cuda_graph_step._warm == 0


def train(model, batches, precision=None):
    """Log variables and final parameters of ``model`` over ``batches``
    (``precision``: AMP's autocast dtype, through mmengine's
    AmpOptimWrapper as ``--amp`` builds it)."""
    wrapper = sgd(model)
    if precision is not None:
        wrapper = AmpOptimWrapper(optimizer=wrapper.optimizer,
                                  dtype=precision)
    logs = []
    for data in batches:
        log_vars = model.train_step(copy.deepcopy(data), wrapper)
        logs.append({key: value.item() for key, value in log_vars.items()})
    return logs, [p.detach().clone() for p in model.parameters()]


@cuda
@pytest.mark.parametrize('precision', [None, 'float16', 'bfloat16'])
def test_replayed_steps_equal_eager_steps(monkeypatch, precision):
    # Exact float32 arithmetic on both sides (TF32 would make each run's
    # rounding its own); the replay runs the eager step's kernels. With AMP
    # the same: autocast's casts and the loss scaling are in the graph, the
    # scaler's overflow check and update run eagerly after each replay.
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    torch.manual_seed(0)
    graphed = build().cuda()
    eager = copy.deepcopy(graphed)
    eager.cuda_graph_step = None
    # 3 warm-up steps, the capture, replays; a smaller batch (eager) in
    # between, then replays again
    batches = [data_batch(i) for i in range(6)] + [data_batch(6, n=3)] + \
        [data_batch(i) for i in range(7, 10)]
    graphed_logs, graphed_params = train(graphed, batches, precision)
    eager_logs, eager_params = train(eager, batches, precision)
    assert graphed.cuda_graph_step.captures == 1
    # float32: a few roundings apart at most if a reduction's order differs;
    # half precision: one rounding of a half-precision value (bfloat16's
    # 2^-8, float16's 2^-11 relative) is the most such an order can move
    rel = dict(float16=2**-11, bfloat16=2**-8).get(precision, 1e-5)
    for step, (got, expected) in enumerate(zip(graphed_logs, eager_logs)):
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key] == pytest.approx(expected[key], rel=rel,
                                             abs=1e-6), (step, key)
    for got, expected in zip(graphed_params, eager_params):
        torch.testing.assert_close(got, expected, rtol=rel, atol=1e-6)


@cuda
def test_a_replaced_parameter_is_captured_again():
    model = build().cuda()
    wrapper = sgd(model)
    for i in range(5):
        model.train_step(data_batch(i), wrapper)
    assert model.cuda_graph_step.captures == 1
    conv = model.backbone.layer1[0].conv1
    conv.weight.data = conv.weight.data.clone()  # a new address
    for i in range(5):
        model.train_step(data_batch(i), wrapper)
    assert model.cuda_graph_step.captures == 2
