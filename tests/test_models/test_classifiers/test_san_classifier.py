import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample



def build(**kwargs):
    cfg = dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', depth=18, stem_channels=4,
                      base_channels=4, train_sizes=[32, 24, 18]),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def batch(sizes=(32, 24, 18), n=4):
    torch.manual_seed(0)
    inputs = [torch.randn(n, 3, s, s) for s in sizes]
    return inputs, [DataSample().set_gt_label(i % 3) for i in range(n)]


def test_loss_terms_per_size_and_hand_sum():
    model = build()
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    assert set(losses) == {'loss_ce@32', 'loss_ce@24', 'loss_ce@18',
                           'loss_kd@24', 'loss_kd@18'}
    # the same terms from the logits at each size (train-mode BN again)
    logits = [model(x, mode='tensor') for x in inputs]
    labels = torch.tensor([0, 1, 2, 0])
    # Same logits bit for bit (train-mode BN recomputes the same batch
    # statistics); only the cross-entropy's mean over 4 samples is reduced
    # differently (mmpretrain: reduction='none', then mean): a few float32
    # roundings, measured <= 1.4e-7 relative over 5 seeds x {1, 2} threads.
    # Bound 1e-5 (70x); a wrong size's logits or a missing term is >= 1e-2.
    for size, z in zip((32, 24, 18), logits):
        ce = torch.nn.functional.cross_entropy(z, labels)
        assert losses[f'loss_ce@{size}'].item() == pytest.approx(ce.item(),
                                                                 rel=1e-5)


def test_unsorted_inputs_are_ordered_largest_first():
    model = build()
    inputs, data_samples = batch((18, 32, 24))
    losses = model.loss(inputs, data_samples)
    assert 'loss_kd@32' not in losses and 'loss_kd@18' in losses


def test_mean_reduction_divides_by_number_of_sizes():
    inputs, data_samples = batch()
    torch.manual_seed(1)
    summed = build().loss(inputs, data_samples)
    torch.manual_seed(1)
    mean = build(loss_reduction='mean').loss(inputs, data_samples)
    # Same weights and forward, so the only difference is one float32 rounding
    # of v / 3 (<= 2^-24 = 6e-8 relative; measured 3.7e-8 over 5 seeds x {1, 2}
    # threads): bound 1e-6 (16x); a wrong divisor is off by >= 25%.
    for key in summed:
        assert mean[key].item() == pytest.approx(summed[key].item() / 3,
                                                 rel=1e-6)


def test_no_distillation():
    losses = build(distill=None).loss(*batch())
    assert not any(k.startswith('loss_kd') for k in losses)


def test_sampled_sizes_keep_the_largest():
    model = build(num_sampled_sizes=1)
    inputs, data_samples = batch()
    seen = set()
    for seed in range(10):
        torch.manual_seed(seed)
        losses = model.loss(inputs, data_samples)
        sizes = {k.split('@')[1] for k in losses if k.startswith('loss_ce')}
        assert '32' in sizes and len(sizes) == 2
        seen |= sizes
    assert seen == {'32', '24', '18'}
    with pytest.raises(ValueError, match='num_sampled_sizes.*0..2.*3'):
        build(num_sampled_sizes=3)


def test_sandwich_keeps_the_largest_and_the_smallest():
    model = build(num_sampled_sizes=0, sandwich=True)
    inputs, data_samples = batch()
    losses = model.loss(inputs, data_samples)
    assert {k.split('@')[1] for k in losses if k.startswith('loss_ce')} == {
        '32', '18'}
    model.num_sampled_sizes = 1  # the middle size: every size, every step
    losses = model.loss(inputs, data_samples)
    assert {k.split('@')[1] for k in losses if k.startswith('loss_ce')} == {
        '32', '24', '18'}
    with pytest.raises(ValueError, match='num_sampled_sizes.*0..1.*got 2'):
        build(num_sampled_sizes=2, sandwich=True)
    with pytest.raises(ValueError, match='sandwich=True.*set num_sampled_sizes'):
        build(sandwich=True)


def test_predict_and_tensor_modes_on_one_batch():
    model = build().eval()
    x = torch.randn(2, 3, 20, 20)  # an unseen size
    preds = model(x, [DataSample(), DataSample()], mode='predict')
    assert preds[0].pred_score.shape == (3, )
    assert model(x, mode='tensor').shape == (2, 3)
    assert [t.shape for t in model([x, x[:1]], mode='tensor')] == [(2, 3),
                                                                    (1, 3)]
    with pytest.raises(TypeError, match='one batch at one size'):
        model([x, x], mode='predict')


def test_refuses_plain_backbone_and_stock_preprocessor():
    with pytest.raises(TypeError, match='scale-adaptive backbone.*ResNet'):
        build(backbone=dict(type='ResNet', depth=18))
    with pytest.raises(TypeError, match='pad and stack'):
        build(data_preprocessor=dict(type='ClsDataPreprocessor'))
    with pytest.raises(ValueError, match="'max'"):
        build(loss_reduction='max')


# Per-size and joint backward add the same terms in different orders (and
# scale_loss divides by the accumulation count, which is multiplied back).
# In float32 that rounding, amplified by BN over as few as 4 values and by
# momentum, reached relative errors of 2e-4 on near-zero BN biases (5 seeds x
# {1, 2} threads): too close to any bound that still catches small bugs. In
# float64 the same comparison measured <= 5e-15 (gradients) and <= 3e-13 (the
# weights after two momentum steps), whatever the thread count; a bug as small
# as distillation weighted 1.001 instead of 1 gives >= 1.8e-3 (gradients) and
# >= 1e-1 (weights), dropping a distillation term >= 0.6.
FLOAT64_TOLERANCE = 1e-9  # >= 3000x the float64 rounding measured above


def assert_close_relative(actual, expected, name,
                          tolerance=FLOAT64_TOLERANCE):
    """Equal up to float64 summation order, relative to the tensor's norm."""
    assert actual.dtype == expected.dtype == torch.float64, name
    error = (actual - expected).norm() / expected.norm().clamp_min(1e-300)
    assert error < tolerance, f'{name}: relative error {error:.2e}'


def float64(model):
    """``model`` in float64, including what its data preprocessor returns
    (mmpretrain's preprocessor always makes float32 images)."""
    model.double()
    model.data_preprocessor.register_forward_hook(
        lambda module, args, out: dict(
            out, inputs=[x.double() for x in out['inputs']]))
    return model


def joint_gradients(model, inputs, data_samples):
    losses = model.loss(inputs, data_samples)
    loss, _ = model.parse_losses(losses)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return grads, losses


@pytest.mark.parametrize('options', [
    dict(),
    dict(loss_reduction='mean'),
    dict(distill=dict(type='ScaleDistillLoss', mode='largest',
                      temperature=2.0)),
])
def test_per_size_backward_gives_the_joint_gradients(options):
    from mmengine.optim import OptimWrapper
    import copy
    joint = float64(build(**options))
    per_size = copy.deepcopy(joint)
    per_size.backward_per_size = True
    inputs, data_samples = batch()
    inputs = [x.double() for x in inputs]
    expected, losses = joint_gradients(joint, inputs, data_samples)
    # accumulative_counts=3: after one iteration no step is taken (if the
    # three backward passes counted as three iterations, it would step and
    # zero the gradients), so the accumulated gradients can be compared.
    wrapper = OptimWrapper(torch.optim.SGD(per_size.parameters(), lr=0.1),
                           accumulative_counts=3)
    wrapper.initialize_count_status(per_size, 0, 6)
    log_vars = per_size.update_per_size(inputs, data_samples, wrapper)
    assert wrapper._inner_count == 1
    for name, param in per_size.named_parameters():
        # scale_loss divides by the accumulation count
        assert_close_relative(param.grad * 3, expected[name], name)
    assert set(log_vars) == {'loss'} | set(losses)
    # 5 positive float64 terms summed in two orders: ~1e-16 relative (a
    # missing or doubled term is >= 1e-2)
    assert log_vars['loss'].item() == pytest.approx(
        sum(v.item() for v in losses.values()), rel=1e-12)
    assert not any(v.requires_grad for v in log_vars.values())


def test_per_size_train_step_equals_joint_train_step():
    from mmengine.optim import OptimWrapper
    import copy
    joint = float64(build())
    per_size = copy.deepcopy(joint)
    per_size.backward_per_size = True
    torch.manual_seed(1)
    # pseudo_collate layout: one list of per-image tensors per size
    data = dict(inputs=[[torch.randint(0, 255, (3, s, s), dtype=torch.uint8)
                         for _ in range(4)] for s in (32, 24, 18)],
                data_samples=[DataSample().set_gt_label(i % 3)
                              for i in range(4)])
    for model in (joint, per_size):
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1,
                                               momentum=0.9))
        for _ in range(2):
            model.train_step(copy.deepcopy(data), wrapper)
    for (name, a), b in zip(joint.state_dict().items(),
                            per_size.state_dict().values()):
        if a.is_floating_point():  # float64: see FLOAT64_TOLERANCE
            assert_close_relative(b, a, name)
        else:
            assert torch.equal(a, b), name


def count_kernel_generation(monkeypatch):
    """Calls of MetaConv2d's one-kernel and batched generation."""
    from san_mm.models.utils import MetaConv2d
    calls = dict(single=0, batched=0)
    single, batched = MetaConv2d.generate_kernel, MetaConv2d.generate_kernels

    def count_single(self, encoding):
        calls['single'] += 1
        return single(self, encoding)

    def count_batched(self, encodings):
        calls['batched'] += 1
        return batched(self, encodings)
    monkeypatch.setattr(MetaConv2d, 'generate_kernel', count_single)
    monkeypatch.setattr(MetaConv2d, 'generate_kernels', count_batched)
    return calls


def test_joint_loss_can_generate_every_size_kernel_in_one_op(monkeypatch):
    """With batch_kernel_generation the joint loss's forwards use one batched
    generation per conv, and nothing outlives the step; by default, and in
    the per-size backward, each forward generates its own kernel."""
    model = build()
    model.train()
    convs = list(model.backbone.meta_convs())
    calls = count_kernel_generation(monkeypatch)
    inputs, data_samples = batch()
    model.loss(inputs, data_samples)
    assert calls == dict(single=3 * len(convs), batched=0)
    model.batch_kernel_generation = True
    calls.update(single=0, batched=0)
    model.loss(inputs, data_samples)
    assert calls == dict(single=0, batched=len(convs))
    assert all(conv._step_kernels is None for conv in convs)
    model.loss(inputs, data_samples)
    # the encodings' device tensor is made once, not on every step
    assert len(model.backbone._step_scales) == 1
    calls.update(single=0, batched=0)
    for _ in model.losses_per_size(inputs, data_samples):
        pass
    assert calls == dict(single=3 * len(convs), batched=0)


def test_compiled_backbone_generates_its_own_kernels(monkeypatch):
    """A compiled backbone computes B + s * A in its graph: no batched
    kernels are made outside it, and the loss is the eager one."""
    model = build(batch_kernel_generation=True)
    model.train()
    inputs, data_samples = batch()
    expected = model.loss(inputs, data_samples)
    calls = count_kernel_generation(monkeypatch)
    model.backbone.compile(backend='eager', dynamic=False)
    got = model.loss(inputs, data_samples)
    assert calls['batched'] == 0
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, msg=key)


def test_batched_kernel_generation_gives_the_same_gradients():
    """In float64 the batched generation's gradients are the per-size
    generation's (a missing size's term would be >= 1e-2 off)."""
    import copy
    per_size = float64(build())
    batched = copy.deepcopy(per_size)
    batched.batch_kernel_generation = True
    inputs, data_samples = batch()
    inputs = [x.double() for x in inputs]
    expected, expected_losses = joint_gradients(per_size, inputs,
                                                data_samples)
    got, losses = joint_gradients(batched, inputs, data_samples)
    for name, grad in expected.items():
        assert_close_relative(got[name], grad, name)
    for key, value in expected_losses.items():
        assert losses[key].item() == pytest.approx(value.item(), rel=1e-12)


def test_joint_loss_with_per_size_backward_warns_once(monkeypatch):
    from san_mm.models.classifiers import san_classifier
    messages = []
    monkeypatch.setattr(san_classifier, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    model = build(backward_per_size=True)
    inputs, data_samples = batch()
    model.loss(inputs, data_samples)
    model.loss(inputs, data_samples)
    assert len(messages) == 1
    assert 'backward_per_size=True has no effect' in messages[0]


def build_width8(**kwargs):
    """:func:`build` at width 8, where every strided 1x1 conv has at least
    the 8 input channels oneDNN's AVX2 kernel trains right in channels-last
    memory (``test_channels_last_warns_where_onednn_trains_it_wrong``)."""
    return build(backbone=dict(type='MetaResNet', depth=18, stem_channels=8,
                               base_channels=8, train_sizes=[32, 24, 18],
                               meta_init='kaiming'),
                 head=dict(type='LinearClsHead', num_classes=3,
                           in_channels=64), **kwargs)


def test_channels_last_model_keeps_its_format_and_computes_the_same():
    from mmengine.optim import OptimWrapper
    torch.manual_seed(0)
    # Width 8, not 4: this test is about SAN's own layout handling, not the
    # oneDNN bug a width-4 model hits on AVX2 (next test).
    plain = build_width8()
    fast = build_width8(channels_last=True)
    fast.init_weights()
    fast.load_state_dict(plain.state_dict())  # copy_: the format stays
    conv = fast.backbone.layer1[0].conv1
    for param in (conv.weight, conv.weight_residual):
        assert param.is_contiguous(memory_format=torch.channels_last)
    data = dict(inputs=[torch.randint(0, 255, (4, 3, s, s), dtype=torch.uint8)
                        for s in (32, 24, 18)],
                data_samples=[DataSample().set_gt_label(i % 3) for i in range(4)])
    processed = fast.data_preprocessor(data, True)
    assert all(x.is_contiguous(memory_format=torch.channels_last)
               for x in processed['inputs'])
    for model in (plain, fast):
        model.train_step(data, OptimWrapper(torch.optim.SGD(
            model.parameters(), lr=0.1)))
    # One SGD step (lr 0.1, BN over 4 images) apart only by the convolutions'
    # summation order in the other memory layout: measured max |difference|
    # 1.9e-4 of the tensor's largest value at width 4 on an earlier machine,
    # 2.5e-4 at width 8 on an AVX2 AMD EPYC (3 seeds x 1 and 2 threads); the
    # bound is 8x that. A wrong layout conversion is off by the tensor scale.
    fast_state = fast.state_dict()
    for name, value in plain.state_dict().items():
        if value.is_floating_point():
            scale = value.abs().max().clamp_min(1e-12)
            error = ((fast_state[name] - value).abs().max() / scale).item()
            assert error <= 2e-3, f'{name}: {error:.2e}'
        else:
            assert torch.equal(fast_state[name], value), name


def test_channels_last_warns_where_onednn_trains_it_wrong(monkeypatch):
    """oneDNN#6035: on an AVX2 CPU a strided 1x1 conv with fewer than 8
    input channels gets a wrong weight gradient in channels-last memory
    (measured here: 0.25-1.0 relative error, and a corrupted heap). Such a
    model warns at build time, naming the convs; nowhere else."""
    from san_mm.models.classifiers import san_classifier
    logged = []
    monkeypatch.setattr(san_classifier, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    capability = []
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability',
                        lambda: capability[-1])
    monkeypatch.setattr(torch.backends.mkldnn, 'is_available', lambda: True)

    capability.append('AVX2')
    model = build(channels_last=True)  # width 4: downsample convs 4, 8, 16
    assert len(logged) == 1 and 'channels_last=True' in logged[0]
    assert ("['backbone.layer2.0.downsample.0']" in logged[0]
            and 'oneDNN#6035' in logged[0])
    assert san_classifier.convs_hit_by_onednn_nhwc_1x1_bug(model) == [
        'backbone.layer2.0.downsample.0']
    build()  # contiguous: not affected
    build_width8(channels_last=True)
    capability.append('AVX512')
    build(channels_last=True)
    assert len(logged) == 1


def test_sizes_left_out_of_a_step_keep_their_bn_sets_untouched():
    """With ``num_sampled_sizes``, a BN set whose size sat out the iteration
    gets no gradient (None, not zeros), so SGD skips it: no weight decay, no
    momentum carried over, no running-statistics update. This is what one
    ``_BatchNorm`` module per set buys; (K, C) tensors shared by all sizes
    would get a zero-filled gradient and be decayed and moved anyway."""
    from mmengine.optim import OptimWrapper

    from san_mm.models.utils import PrivateBatchNorm2d
    model = build().train()
    optim_wrapper = OptimWrapper(torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1))
    inputs, data_samples = batch()
    # one step at all sizes: every set has a momentum buffer afterwards
    model.update_per_size(inputs, data_samples, optim_wrapper)

    def set_tensors(index):
        return [t.clone() for m in model.modules()
                if isinstance(m, PrivateBatchNorm2d)
                for t in (*m.sets[index].parameters(),
                          *m.sets[index].buffers())]

    before = [set_tensors(i) for i in range(3)]
    model.num_sampled_sizes = 1
    torch.manual_seed(0)
    log_vars = model.update_per_size(inputs, data_samples, optim_wrapper)
    trained = {int(key.split('@')[1]) for key in log_vars
               if key.startswith('loss_ce@')}
    assert len(trained) == 2 and 32 in trained
    for index, size in enumerate((32, 24, 18)):
        unchanged = all(torch.equal(a, b) for a, b in
                        zip(before[index], set_tensors(index)))
        assert unchanged == (size not in trained), size
