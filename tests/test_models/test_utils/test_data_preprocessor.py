import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.structures import DataSample

from san_mm.models.utils import SANDataPreprocessor

MEAN, STD = [10., 20., 30.], [2., 4., 5.]


def samples(n=2):
    return [DataSample().set_gt_label(i) for i in range(n)]


def views(n=2, sizes=(8, 4)):
    torch.manual_seed(0)
    return [[torch.randint(0, 255, (3, s, s), dtype=torch.uint8)
             for s in sizes] for _ in range(n)]


# Both sides compute (x - mean) / std in float32 (mmpretrain's preprocessor
# does): equal today; default float32 tolerance in case mmpretrain reorders
# the arithmetic (e.g. multiplies by 1 / std: ~1e-5 on values ~120, within
# its 1e-5 + 1.3e-6 * |x|). Normalising with another size's or no statistics
# is off by >= 1.
def expected(batch):
    return (batch.float() - torch.tensor(MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
def test_each_size_normalised_separately(collate):
    pre = SANDataPreprocessor(mean=MEAN, std=STD)
    per_sample = views()
    data = collate([dict(inputs=v, data_samples=s)
                    for v, s in zip(per_sample, samples())])
    out = pre(data, training=True)
    assert [tuple(x.shape) for x in out['inputs']] == [(2, 3, 8, 8),
                                                       (2, 3, 4, 4)]
    for k in range(2):
        batch = torch.stack([v[k] for v in per_sample])
        torch.testing.assert_close(out['inputs'][k], expected(batch))
    labels = [int(s.gt_label) for s in out['data_samples']]
    assert labels == [0, 1]


def test_single_batch_like_parent():
    pre = SANDataPreprocessor(mean=MEAN, std=STD)
    batch = torch.randint(0, 255, (2, 3, 6, 6), dtype=torch.uint8)
    out = pre(dict(inputs=batch, data_samples=samples()))
    torch.testing.assert_close(out['inputs'], expected(batch))


def test_reference_unit_range_inputs():
    pre = SANDataPreprocessor(mean=[0, 0, 0], std=[255, 255, 255])
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(pre(dict(inputs=[batch]))['inputs'][0],
                       torch.ones(1, 3, 2, 2))


def test_batch_augments_refused():
    with pytest.raises(ValueError, match='Mixup.*remove batch_augments'):
        SANDataPreprocessor(batch_augments=dict(
            augments=dict(type='Mixup', alpha=0.2)))


def test_mixed_shapes_within_one_size_are_refused():
    pre = SANDataPreprocessor()
    per_size = [[torch.zeros(3, 8, 8), torch.zeros(3, 6, 6)],
                [torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)]]
    with pytest.raises(ValueError, match=r'one image shape.*\(3, 6, 6\)'):
        pre(dict(inputs=per_size))
