import copy

import pytest
import torch
import torch.nn.functional as F

from san_mm.models.utils import (BNSelection, MetaConv2d, ScaleContext,
                                 ScaleState)


def make_conv(*args, encoding=0.5, **kwargs):
    ctx = ScaleContext()
    ctx.state = ScaleState(160, encoding, BNSelection('set', 0))
    return MetaConv2d(*args, scale_context=ctx, **kwargs)


def test_kernel_is_base_plus_scaled_residual():
    conv = make_conv(4, 6, 3, padding=1)
    # torch.add(B, A, alpha=s) may fuse the multiply-add that B + s * A rounds
    # twice (measured 1.2e-7 on values ~1.7), and the midpoint of two kernels
    # rounds too: default float32 tolerance; a wrong encoding is >= 1e-2 off.
    for s in (0.3, 0.55, 0.7):
        torch.testing.assert_close(conv.generate_kernel(s),
                                   conv.weight + s * conv.weight_residual)
    # kernels interpolate linearly in the encoding
    mid = conv.generate_kernel(0.5)
    torch.testing.assert_close(
        mid, (conv.generate_kernel(0.4) + conv.generate_kernel(0.6)) / 2)


@pytest.mark.parametrize('kwargs', [
    dict(stride=2, padding=1),
    dict(padding=2, dilation=2),
    dict(groups=8, padding=1),  # depthwise
    dict(groups=2, stride=2),
])
def test_forward_equals_conv_with_generated_kernel(kwargs):
    conv = make_conv(8, 8, 3, encoding=0.4, **kwargs)
    x = torch.randn(2, 8, 11, 11)
    expected = F.conv2d(x, conv.weight + 0.4 * conv.weight_residual, None,
                        **kwargs)
    # kernels one rounding apart (see above): measured 1.9e-6 on outputs up to
    # 19, within the default float32 tolerance (1e-5 + 1.3e-6 * |y|) by >= 10x
    for mode in (True, False):
        conv.train(mode)
        torch.testing.assert_close(conv(x), expected)


def test_batched_generation_equals_one_by_one():
    conv = make_conv(3, 5, 3, groups=1)
    encodings = [0.7, 0.6, 0.5, 0.4, 0.3]
    batched = conv.generate_kernels(encodings)
    assert batched.shape == (5, 5, 3, 3, 3)
    # broadcast multiply-add vs torch.add(alpha=s): at most a rounding apart
    # (equal today), default float32 tolerance
    for kernel, s in zip(batched, encodings):
        torch.testing.assert_close(kernel, conv.generate_kernel(s))
    shared = make_conv(3, 5, 3, meta=False)
    assert torch.equal(shared.generate_kernels([0.3, 0.7])[1], shared.weight)
    # channels-last weights give channels-last kernels, as B + s * A does
    conv = conv.to(memory_format=torch.channels_last)
    for kernel, s in zip(conv.generate_kernels(encodings), encodings):
        assert kernel.is_contiguous(memory_format=torch.channels_last)
        assert not kernel.is_contiguous()
        torch.testing.assert_close(kernel, conv.generate_kernel(s))


def test_step_kernels_are_used_by_the_forwards_of_one_training_step():
    conv = make_conv(3, 5, 3, padding=1, encoding=0.6)
    conv.train()
    encodings = [0.7, 0.6, 0.4]
    conv.set_step_kernels(encodings, torch.tensor(encodings))
    for s in encodings:
        kernel = conv.kernel_for(s)
        assert kernel._base is not None  # a view of the one batched tensor
        torch.testing.assert_close(kernel, conv.generate_kernel(s))
    assert conv.kernel_for(0.5)._base is None  # another encoding: its own
    # gradients reach A and B through the batched op, as through B + s * A
    x = torch.randn(2, 3, 7, 7)
    conv(x).square().sum().backward()
    batched_grads = [conv.weight.grad.clone(), conv.weight_residual.grad.clone()]
    conv.zero_grad()
    conv.clear_step_kernels()
    assert conv._step_kernels is None
    conv(x).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, batched_grads[0])
    torch.testing.assert_close(conv.weight_residual.grad, batched_grads[1])
    # a step's kernels never outlive a train / eval switch or a copy
    conv.set_step_kernels(encodings)
    assert copy.deepcopy(conv)._step_kernels is None
    conv.eval()
    assert conv._step_kernels is None
    shared = make_conv(3, 5, 3, meta=False)
    shared.set_step_kernels(encodings)
    assert shared._step_kernels is None  # nothing to generate


def test_reference_initialisations():
    torch.manual_seed(0)
    resnet = make_conv(256, 256, 3, meta_init='resnet')
    for p in (resnet.weight, resnet.weight_residual):
        assert -1 <= p.min() < -0.99 and 0.99 < p.max() <= 1
    mbv2 = make_conv(256, 256, 3, meta_init='mobilenet_v2')
    assert torch.count_nonzero(mbv2.weight) == 0
    # std of 589,824 N(0, 0.01) draws: relative standard error
    # 1 / sqrt(2n) = 9.2e-4, so rel=0.01 is ~11 sigma (seeded, and never
    # reached by chance) while a different std (e.g. Kaiming's 0.03) fails
    assert mbv2.weight_residual.std().item() == pytest.approx(0.01, rel=0.01)
    kaiming = make_conv(64, 64, 3, meta_init='kaiming')
    assert torch.count_nonzero(kaiming.weight_residual) == 0
    with pytest.raises(ValueError, match="'xavier'"):
        make_conv(4, 4, 3, meta_init='xavier')


def test_no_meta_network_shares_one_kernel():
    conv = make_conv(4, 4, 3, meta=False)
    assert conv.weight_residual is None
    assert set(conv.state_dict()) == {'weight'}
    assert conv.generate_kernel(0.3) is conv.weight


def test_eval_cache_reuses_kernel():
    conv = make_conv(4, 4, 3).eval()
    with torch.no_grad():
        assert conv.kernel_for(0.5) is conv.kernel_for(0.5)
        assert conv.kernel_for(0.5) is not conv.kernel_for(0.4)
    # training and grad-enabled eval never use a cached, graph-less kernel
    conv.train()
    assert conv.kernel_for(0.5).requires_grad
    conv.eval()
    out = conv(torch.randn(1, 4, 5, 5)).sum()
    out.backward()
    assert conv.weight_residual.grad is not None


# The cache tests compare a cached kernel with B + s * A recomputed: at most
# a rounding apart (equal at s = 0.5), default float32 tolerance; a stale
# kernel is off by the whole update (>= 1e-2 here).
def cached_kernel(conv, s=0.5):
    with torch.no_grad():
        return conv.kernel_for(s).clone()


def expected_kernel(conv, s=0.5):
    with torch.no_grad():
        return conv.weight + s * conv.weight_residual


def test_cache_not_stale_after_optimizer_step():
    conv = make_conv(4, 4, 3).eval()
    before = cached_kernel(conv)
    optim = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv.train()
    conv(torch.randn(2, 4, 5, 5)).square().sum().backward()
    optim.step()
    conv.eval()
    after = cached_kernel(conv)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, expected_kernel(conv))
    # a step taken while staying in eval mode (no train() switch) too
    with torch.no_grad():
        conv.weight_residual.add_(1.0)
    torch.testing.assert_close(cached_kernel(conv), expected_kernel(conv))


def test_cache_not_stale_after_load_state_dict():
    conv = make_conv(4, 4, 3).eval()
    other = make_conv(4, 4, 3)
    cached_kernel(conv)
    conv.load_state_dict(other.state_dict())
    torch.testing.assert_close(cached_kernel(conv), expected_kernel(other))


def test_cache_not_stale_after_to():
    conv = make_conv(4, 4, 3).eval()
    cached_kernel(conv)
    conv.to(torch.float64)
    kernel = cached_kernel(conv)
    assert kernel.dtype == torch.float64
    if torch.cuda.is_available():
        conv.cuda()
        assert cached_kernel(conv).device.type == 'cuda'


def test_cache_not_stale_after_train_eval_switch():
    conv = make_conv(4, 4, 3).eval()
    cached_kernel(conv)
    conv.train()
    with torch.no_grad():
        conv.weight.mul_(2)
    conv.eval()
    torch.testing.assert_close(cached_kernel(conv), expected_kernel(conv))


def test_cache_is_bounded_and_not_copied():
    conv = make_conv(4, 4, 3, cache_size=3).eval()
    for s in (0.1, 0.2, 0.3, 0.4, 0.5):
        cached_kernel(conv, s)
    assert list(conv._kernel_cache) == [0.3, 0.4, 0.5]
    assert len(copy.deepcopy(conv)._kernel_cache) == 0


def test_forward_needs_an_active_size():
    conv = MetaConv2d(4, 4, 3, scale_context=ScaleContext())
    with pytest.raises(RuntimeError,
                       match='MetaConv2d has no active resolution'):
        conv(torch.randn(1, 4, 5, 5))
