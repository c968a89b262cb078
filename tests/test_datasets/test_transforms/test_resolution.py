import mmcv
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmpretrain.registry import TRANSFORMS

from san_mm.datasets.transforms import ResizeCenterCrop, ResolutionSample


def image(h=60, w=80, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels else (h, w)
    return rng.integers(0, 255, shape, dtype=np.uint8)


def test_one_crop_geometry_for_every_size():
    transform = ResolutionSample(sizes=[16, 32, 24], flip_prob=0.0)
    img = image()
    for seed in range(5):
        np.random.seed(seed)
        out = transform(dict(img=img.copy()))
        x1, y1, x2, y2 = out['crop_bbox']
        crop = img[y1:y2, x1:x2]
        assert [v.shape for v in out['img']] == [(32, 32, 3), (24, 24, 3),
                                                 (16, 16, 3)]
        for view, size in zip(out['img'], (32, 24, 16)):
            np.testing.assert_array_equal(
                view, mmcv.imresize(crop, (size, size), interpolation='bilinear'))
        assert out['resolution_sizes'] == (32, 24, 16)


def test_flips_are_independent_per_size():
    transform = ResolutionSample(sizes=[32, 24, 16], crop_ratio_range=(1, 1),
                                 aspect_ratio_range=(4 / 3, 4 / 3))
    img = image(60, 80)
    patterns = set()
    for seed in range(40):
        np.random.seed(seed)
        out = transform(dict(img=img.copy()))
        patterns.add(tuple(out['flip']))
        for view, size, flip in zip(out['img'], (32, 24, 16), out['flip']):
            plain = mmcv.imresize(img, (size, size))
            expected = mmcv.imflip(plain) if flip else plain
            np.testing.assert_array_equal(view, expected)
    assert len(patterns) > 4  # not one coin for all sizes


def test_grayscale_and_small_images():
    transform = ResolutionSample(sizes=[28, 12])
    out = transform(dict(img=image(20, 20, channels=0)))  # smaller than 28
    assert [v.shape for v in out['img']] == [(28, 28), (12, 12)]
    with pytest.raises(ValueError, match=r'shape \(4, 4, 4, 4\).*a\.png'):
        transform(dict(img=np.zeros((4, 4, 4, 4), np.uint8), img_path='a.png'))


def test_pack_inputs_gives_a_list_of_sizes():
    pipeline = Compose([
        TRANSFORMS.build(dict(type='ResolutionSample', sizes=[32, 16])),
        TRANSFORMS.build(dict(type='PackInputs'))
    ])
    packed = pipeline(dict(img=image(), gt_label=1))
    assert [tuple(t.shape) for t in packed['inputs']] == [(3, 32, 32),
                                                          (3, 16, 16)]


def test_resolution_sample_validation():
    with pytest.raises(ValueError, match=r'\[32\] more than once'):
        ResolutionSample(sizes=[32, 32])
    with pytest.raises(ValueError, match='flip_prob'):
        ResolutionSample(sizes=[32], flip_prob=2)


@pytest.mark.parametrize('size,short', [(224, 256), (192, 219), (160, 182),
                                        (128, 146), (96, 109)])
def test_resize_center_crop_reference_protocol(size, short):
    transform = ResizeCenterCrop(size=size)
    assert transform.resize.scale == short
    out = transform(dict(img=image(300, 400)))
    assert out['img'].shape == (size, size, 3)


def test_resize_center_crop_validation():
    with pytest.raises(ValueError, match='crop_ratio'):
        ResizeCenterCrop(size=32, crop_ratio=1.5)
    with pytest.raises(ValueError, match='-1'):
        ResizeCenterCrop(size=-1)


@pytest.mark.parametrize('kind', ['gray', 'rgba', '16bit'])
def test_unusual_image_files_are_converted(tmp_path, kind):
    import cv2
    rng = np.random.default_rng(0)
    if kind == 'gray':
        img = rng.integers(0, 255, (30, 40), dtype=np.uint8)
    elif kind == 'rgba':
        img = rng.integers(0, 255, (30, 40, 4), dtype=np.uint8)
    else:
        img = rng.integers(0, 65535, (30, 40, 3), dtype=np.uint16)
    path = str(tmp_path / f'{kind}.png')
    cv2.imwrite(path, img)
    pipeline = Compose([
        TRANSFORMS.build(dict(type='LoadImageFromFile')),
        TRANSFORMS.build(dict(type='ResolutionSample', sizes=[32, 16])),
        TRANSFORMS.build(dict(type='PackInputs'))
    ])
    packed = pipeline(dict(img_path=path, gt_label=0))
    assert [tuple(t.shape) for t in packed['inputs']] == [(3, 32, 32),
                                                          (3, 16, 16)]
    assert all(str(t.dtype) == 'torch.uint8' for t in packed['inputs'])


def test_corrupt_image_file_is_reported_by_path(tmp_path):
    path = tmp_path / 'broken.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n not really an image')
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    with pytest.raises(Exception, match='broken.png'):
        load(dict(img_path=str(path)))


def test_resize_center_crop_set_size_equals_a_new_transform():
    img = np.random.default_rng(0).integers(0, 255, (40, 30, 3), np.uint8)
    transform = ResizeCenterCrop(size=32, crop_ratio=0.875)
    transform.set_size(20)
    expected = ResizeCenterCrop(size=20, crop_ratio=0.875)(dict(img=img))
    got = transform(dict(img=img))
    assert transform.size == 20 and got['img'].shape[:2] == (20, 20)
    assert np.array_equal(got['img'], expected['img'])
    with pytest.raises(ValueError, match='positive'):
        transform.set_size(0)
