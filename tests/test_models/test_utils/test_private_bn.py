import copy

import pytest
import torch
import torch.nn as nn

from san_mm.models.utils import (BNSelection, PrivateBatchNorm2d,
                                 ScaleContext, ScaleState)


def make_bn(num_sets=3, channels=4):
    ctx = ScaleContext()
    return PrivateBatchNorm2d(channels, num_sets, ctx), ctx


def randomise(bn):
    torch.manual_seed(0)
    for layer in bn.sets:
        layer.weight.data.uniform_(0.5, 2)
        layer.bias.data.normal_()
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2)


def test_only_selected_set_is_used_and_updated():
    bn, ctx = make_bn()
    ctx.state = ScaleState(160, 0.5, BNSelection('set', 1))
    bn.train()
    bn(torch.randn(8, 4, 5, 5) * 3 + 2)
    assert bn.sets[1].num_batches_tracked == 1
    assert bn.sets[0].num_batches_tracked == 0
    assert torch.equal(bn.sets[2].running_mean, torch.zeros(4))
    randomise(bn)
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    for index in range(3):  # the selected set's own forward: exact
        ctx.state = ScaleState(160, 0.5, BNSelection('set', index))
        torch.testing.assert_close(bn(x), bn.sets[index](x), atol=0, rtol=0)


def test_eval_fast_path_follows_the_sets_current_tensors_and_hooks():
    """The eval path reads the selected set's tensors from its dicts on every
    forward: never a stale reference after the set's tensors are replaced,
    and a set with hooks or without running statistics runs as a module."""
    bn, ctx = make_bn()
    randomise(bn)
    bn.eval()
    ctx.state = ScaleState(160, 0.5, BNSelection('set', 2))
    x = torch.randn(2, 4, 3, 3)
    bn(x)  # a forward before the change below
    bn.sets[2].running_mean = torch.full((4, ), 5.0)  # replaced, not in place
    bn.sets[2].weight = nn.Parameter(torch.full((4, ), 3.0))
    torch.testing.assert_close(bn(x), bn.sets[2](x), atol=0, rtol=0)
    bn.double()  # _apply replaces the buffers
    torch.testing.assert_close(bn(x.double()), bn.sets[2](x.double()),
                               atol=0, rtol=0)
    calls = []
    handle = bn.sets[2].register_forward_hook(lambda *args: calls.append(1))
    bn(x.double())
    handle.remove()
    assert calls == [1]
    no_stats = PrivateBatchNorm2d(
        4, 1, ctx, norm_cfg=dict(type='BN', track_running_stats=False))
    ctx.state = ScaleState(160, 0.5, BNSelection('set', 0))
    no_stats.eval()
    y = torch.randn(8, 4, 3, 3) * 3 + 1
    # No running statistics: batch statistics even in eval, as BatchNorm2d.
    torch.testing.assert_close(no_stats(y), no_stats.sets[0](y), atol=0,
                               rtol=0)
    assert no_stats(y).mean().abs() < 1e-5


def test_interpolation_endpoints_and_midpoint():
    bn, ctx = make_bn()
    randomise(bn)
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    # At alpha 0 and 1 the blend returns a neighbour's tensors exactly (lerp,
    # like (1 - a) * x + a * y, is exact at the end points): exact.
    for alpha, expected in ((0.0, bn.sets[2]), (1.0, bn.sets[1])):
        ctx.state = ScaleState(0, 0.5, BNSelection('interpolate', 2, 1, alpha))
        torch.testing.assert_close(bn(x), expected(x), atol=0, rtol=0)
    # lerp(a, b, 0.5) vs (a + b) / 2: one or two roundings apart (measured
    # 3e-8 on values ~2): default float32 tolerance.
    mid = bn.interpolated_parameters(2, 1, 0.5)
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        torch.testing.assert_close(
            mid[name], (getattr(bn.sets[2], name) + getattr(bn.sets[1], name)) / 2)


def test_data_free_blend_is_cached_in_eval_and_never_stale():
    bn, ctx = make_bn()
    randomise(bn)
    bn.eval()
    ctx.state = ScaleState(170, 0.5, BNSelection('interpolate', 2,
                                                 upper_index=1, alpha=0.25))
    x = torch.randn(2, 4, 3, 3)

    def expected():
        p = bn.interpolated_parameters(2, 1, 0.25)
        return torch.nn.functional.batch_norm(
            x.to(p['weight'].dtype), p['running_mean'], p['running_var'],
            p['weight'], p['bias'], False, 0.0, p['eps'])

    with torch.no_grad():
        first = bn(x)
        blended = bn._blend_cache[(2, 1, 0.25)][1]
        torch.testing.assert_close(first, expected(), atol=0, rtol=0)
        bn(x)
        assert bn._blend_cache[(2, 1, 0.25)][1] is blended  # reused
        assert copy.deepcopy(bn)._blend_cache == {}  # derived data: not copied
        bn.sets[1].running_mean.add_(1.0)  # in place: version bump
        torch.testing.assert_close(bn(x), expected(), atol=0, rtol=0)
        bn.sets[2].weight = nn.Parameter(torch.full((4, ), 2.0))  # replaced
        torch.testing.assert_close(bn(x), expected(), atol=0, rtol=0)
        state = {k: v + 1 if v.is_floating_point() else v
                 for k, v in bn.state_dict().items()}
        bn.load_state_dict(state)
        torch.testing.assert_close(bn(x), expected(), atol=0, rtol=0)
        bn.double()
        x = x.double()
        torch.testing.assert_close(bn(x), expected(), atol=0, rtol=0)
    # With gradients wanted, the blend is part of the graph, not cached.
    bn.float()
    x = x.float()
    bn(x).sum().backward()
    assert bn.sets[1].weight.grad is not None and bn.sets[2].weight.grad is not None


def test_calibration_collects_cumulative_statistics():
    bn, ctx = make_bn()
    randomise(bn)
    before = [s.running_mean.clone() for s in bn.sets]
    batches = [torch.randn(16, 4, 6, 6) * 2 + 1 for _ in range(3)]
    bn.reset_calibration(176)
    ctx.state = ScaleState(176, 0.55, BNSelection('calibrating', 1, size=176))
    bn.eval()  # calibration uses batch statistics whatever the mode
    for batch in batches:
        bn(batch)
    stats = bn.calibrated['176']
    expected_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    # cumulative average (momentum 1/n) vs the mean of the batch means: the
    # same mean up to float32 rounding (measured 1.2e-7 on values ~1), default
    # tolerance; a moving average with momentum 0.1 would be off by ~1e-1.
    torch.testing.assert_close(stats.running_mean, expected_mean)
    for saved, layer in zip(before, bn.sets):  # training sets untouched
        assert torch.equal(saved, layer.running_mean)
    assert bn.calibrated_sizes == [176]
    ctx.state = ScaleState(176, 0.55, BNSelection('calibrated', 1, size=176))
    x = batches[0]
    reference = nn.functional.batch_norm(
        x, stats.running_mean, stats.running_var, bn.sets[1].weight,
        bn.sets[1].bias, False, 0.0, 1e-5)  # 1e-5: BatchNorm2d's eps
    # the same F.batch_norm call on the same tensors: exact
    torch.testing.assert_close(bn(x), reference, atol=0, rtol=0)


def test_calibrated_statistics_load_into_fresh_module():
    bn, ctx = make_bn()
    bn.reset_calibration(100)
    bn.calibrated['100'].running_mean.fill_(3.0)
    fresh, _ = make_bn()
    fresh.load_state_dict(bn.state_dict())
    assert fresh.calibrated_sizes == [100]
    assert torch.equal(fresh.calibrated['100'].running_mean, torch.full((4, ), 3.0))


def test_sync_bn_conversion_keeps_private_sets():
    bn, _ = make_bn()
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert all(isinstance(s, nn.SyncBatchNorm) for s in converted.sets)


def test_forward_needs_an_active_size():
    bn = PrivateBatchNorm2d(4, num_sets=2, scale_context=ScaleContext())
    with pytest.raises(RuntimeError,
                       match='PrivateBatchNorm2d has no active resolution'):
        bn(torch.randn(1, 4, 5, 5))


def test_invalid_num_sets():
    with pytest.raises(ValueError, match='0'):
        PrivateBatchNorm2d(4, 0, ScaleContext())


def test_remove_calibration_drops_only_that_size():
    ctx = ScaleContext()
    bn = PrivateBatchNorm2d(4, num_sets=2, scale_context=ctx)
    bn.reset_calibration(20)
    bn.reset_calibration(18)
    bn.remove_calibration(20)
    bn.remove_calibration(14)  # never calibrated: nothing to do
    assert bn.calibrated_sizes == [18]
    assert not [k for k in bn.state_dict() if 'calibrated.20.' in k]
