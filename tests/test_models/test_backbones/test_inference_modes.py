"""Inference at sizes that were not trained on: proxy, ideal, calibrated, data-free."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmpretrain import get_model

from san_mm.models import MetaResNet
from tests.conftest import REPO

SIZES = (224, 192, 160, 128, 96)


def trained_like(seed=0, **kwargs):
    """A tiny MetaResNet whose private BN sets differ from each other, as
    after training."""
    torch.manual_seed(seed)
    net = MetaResNet(18, stem_channels=4, base_channels=4, **kwargs)
    for bn in net.private_bns():
        for layer in bn.sets:
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.normal_(0, 0.1)
            layer.running_mean.normal_(0, 0.1)
            layer.running_var.uniform_(0.5, 1.5)
    return net.eval()


def forward(net, size, mode, seed=1):
    net.inference_mode = mode
    torch.manual_seed(seed)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        return net(x)[-1]


@pytest.mark.parametrize('size', SIZES)
def test_every_mode_equals_proxy_at_training_sizes(size):
    net = trained_like()
    proxy = forward(net, size, 'proxy')
    # At a training size every mode selects the same encoding and BN set (the
    # data-free blend at an end point is the set itself): the same float ops,
    # exact (measured 0).
    for mode in ('ideal', 'calibrated', 'data_free'):
        torch.testing.assert_close(forward(net, size, mode), proxy, atol=0,
                                   rtol=0)


def test_ideal_differs_from_proxy_only_through_the_encoding():
    net = trained_like()
    ideal = forward(net, 200, 'ideal')
    ideal_state = net.resolve_scale(200)
    proxy = forward(net, 200, 'proxy')
    proxy_state = net.resolve_scale(200)
    assert not torch.allclose(ideal, proxy)
    assert ideal_state.bn == proxy_state.bn  # BN of 192 in both
    # encodings: a few float64 ops (error ~1e-16); approx's default rel 1e-6
    # is far above that and far below the 0.025 between neighbouring sizes
    assert ideal_state.encoding == pytest.approx(0.625)
    assert proxy_state.encoding == pytest.approx(0.6)


def test_midpoint_kernel_is_mean_of_neighbour_kernels():
    net = trained_like()
    encode = net.scale_encoder.encode
    # B + 0.65 A vs the mean of B + 0.6 A and B + 0.7 A: a few roundings
    # (measured 1.2e-7 on values ~1.7), default float32 tolerance
    for conv in net.meta_convs():
        mid = conv.generate_kernel(encode(208))
        torch.testing.assert_close(
            mid, (conv.generate_kernel(encode(192)) +
                  conv.generate_kernel(encode(224))) / 2)


def test_data_free_end_points_equal_the_neighbours():
    net = trained_like()
    for bn in net.private_bns():
        for alpha, expected in ((0.0, bn.sets[2]), (1.0, bn.sets[1])):
            params = bn.interpolated_parameters(2, 1, alpha)
            for name in ('weight', 'bias', 'running_mean', 'running_var'):
                # lerp is exact at its end points
                torch.testing.assert_close(params[name],
                                           getattr(expected, name), atol=0,
                                           rtol=0)
    state = net.scale_policy.resolve(176, 'data_free')
    assert (state.bn.index, state.bn.upper_index, state.bn.alpha) == (2, 1, 0.5)


def test_data_free_warns_outside_trained_range():
    net = trained_like()
    with pytest.warns(UserWarning, match='outside the trained range'):
        forward(net, 64, 'data_free')


def calibrate(net, size, batches):
    with torch.no_grad(), net.calibrating(size):
        for x in batches:
            net(x)


def test_calibration_changes_only_the_statistics_for_that_size():
    net = trained_like()
    before = copy.deepcopy(net.state_dict())
    batches = [torch.rand(8, 3, 176, 176) for _ in range(2)]
    calibrate(net, 176, batches)
    after = net.state_dict()
    new_keys = set(after) - set(before)
    assert new_keys and all('.calibrated.176.' in k for k in new_keys)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert net.calibrated_sizes == [176]
    # calibrated mode now uses them; other modes are unaffected
    calibrated = forward(net, 176, 'calibrated')
    assert net.resolve_scale(176).bn.kind == 'calibrated'
    assert not torch.allclose(calibrated, forward(net, 176, 'ideal'))


def test_a_size_counts_as_calibrated_only_when_every_private_bn_has_it():
    net = trained_like()
    calibrate(net, 176, [torch.rand(8, 3, 176, 176)])
    net.inference_mode = 'calibrated'
    assert net.calibrated_sizes == [176]
    assert net.resolve_scale(176).bn.kind == 'calibrated'
    last = list(net.private_bns())[-1]
    last.remove_calibration(176)  # e.g. a hand-edited checkpoint
    assert net.calibrated_sizes == []
    with pytest.warns(UserWarning, match='no calibrated BN statistics'):
        assert net.resolve_scale(176).bn.kind == 'interpolate'


def test_calibration_is_deterministic_and_survives_save_load(tmp_path):
    batches = [torch.rand(8, 3, 176, 176, generator=torch.Generator().manual_seed(i))
               for i in range(2)]
    first, second = trained_like(), trained_like()
    calibrate(first, 176, batches)
    calibrate(second, 176, batches)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    path = tmp_path / 'calibrated.pth'
    torch.save({'state_dict': first.state_dict()}, path)
    fresh = trained_like(seed=5)
    fresh.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    assert fresh.calibrated_sizes == [176]
    # the same tensors through the same ops: exact
    torch.testing.assert_close(forward(fresh, 176, 'calibrated'),
                               forward(first, 176, 'calibrated'), atol=0,
                               rtol=0)


def test_get_model_forward_at_unseen_size_uses_configured_mode():
    cfg = Config.fromfile(f'{REPO}/tests/data/tiny_san_resnet18.py')
    outputs = {}
    for mode in ('proxy', 'ideal', 'data_free'):
        cfg.model.backbone.inference_mode = mode
        torch.manual_seed(0)
        model = get_model(copy.deepcopy(cfg))
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            outputs[mode] = model(torch.rand(2, 3, 20, 20))
        state = model.backbone.resolve_scale(20)
        assert state.size == 20
        expected_kind = 'interpolate' if mode == 'data_free' else 'set'
        assert state.bn.kind == expected_kind
        expected_encoding = 0.7 * (18 if mode == 'proxy' else 20) / 32
        # float64 arithmetic (~1e-16) vs approx's rel 1e-6; sizes 18 and 20
        # differ by 0.044
        assert state.encoding == pytest.approx(expected_encoding)
    assert not torch.allclose(outputs['proxy'], outputs['ideal'])
