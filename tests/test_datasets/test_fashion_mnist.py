import gzip
import os.path as osp
import struct

import numpy as np
import pytest

from san_mm.datasets import FashionMNISTWithVal


def write_idx(root, prefix, labels):
    """Tiny Fashion-MNIST-format files: image i is filled with the value i
    (so positions can be read back), label i is ``labels[i]``."""
    n = len(labels)
    images = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
    with open(osp.join(root, f'{prefix}-images-idx3-ubyte'), 'wb') as f:
        f.write(struct.pack('>IIII', 2051, n, 28, 28) + images.tobytes())
    with open(osp.join(root, f'{prefix}-labels-idx1-ubyte'), 'wb') as f:
        f.write(struct.pack('>II', 2049, n) + np.asarray(labels, np.uint8).tobytes())


@pytest.fixture(scope='module')
def tiny_fashion_mnist(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('fmnist'))
    write_idx(root, 'train', [i % 10 for i in range(50)])
    write_idx(root, 't10k', [9 - i % 10 for i in range(12)])
    return root


@pytest.mark.parametrize('split, first, count', [
    ('train', 0, 40), ('val', 40, 10), ('trainval', 0, 50), ('test', 0, 12)])
def test_splits_are_fixed_positions_of_the_official_files(
        tiny_fashion_mnist, split, first, count):
    dataset = FashionMNISTWithVal(tiny_fashion_mnist, split=split,
                                  val_images=10, test_mode=split != 'train',
                                  download=False)
    assert len(dataset) == count
    positions = [int(dataset.get_data_info(i)['img'][0, 0])
                 for i in range(count)]
    assert positions == list(range(first, first + count))
    expected = [9 - p % 10 for p in positions] if split == 'test' else [
        p % 10 for p in positions]
    assert [int(dataset.get_data_info(i)['gt_label'])
            for i in range(count)] == expected


def test_indices_select_within_the_split(tiny_fashion_mnist):
    dataset = FashionMNISTWithVal(tiny_fashion_mnist, split='val',
                                  val_images=10, indices=3, download=False)
    assert [int(dataset.get_data_info(i)['img'][0, 0])
            for i in range(len(dataset))] == [40, 41, 42]


def test_bad_split_and_val_size_are_refused(tiny_fashion_mnist):
    with pytest.raises(ValueError, match="split 'validation'.*'val'"):
        FashionMNISTWithVal(tiny_fashion_mnist, split='validation')
    with pytest.raises(ValueError, match=(
            r"unknown Fashion-MNIST split 'validation'; expected one of "
            r"\['train', 'val', 'trainval', 'test'\]: set the dataset's "
            r'split to one of them')):
        FashionMNISTWithVal(tiny_fashion_mnist, split='validation')
    with pytest.raises(ValueError, match='val_images must be'):
        FashionMNISTWithVal(tiny_fashion_mnist, split='val', val_images=0)


def test_missing_files_name_the_command_and_never_download(tmp_path, monkeypatch):
    """Without the files, and without the Debian package to extract them
    from, the dataset says what to run instead of downloading."""
    from san_mm.datasets import DataNotFoundError, fashion_mnist
    monkeypatch.setattr(fashion_mnist, 'DEBIAN_DIR', str(tmp_path / 'no-package'))
    with pytest.raises(DataNotFoundError, match=(
            r"not in '.*empty'.*python tools/prepare_fashion_mnist\.py.*"
            r'--cfg-options data_root=DIR')):
        FashionMNISTWithVal(str(tmp_path / 'empty'), split='val', test_mode=True)
    # with the package's files it extracts them itself
    package = tmp_path / 'package'
    package.mkdir()
    write_idx(str(tmp_path), 'train', [i % 10 for i in range(20)])
    write_idx(str(tmp_path), 't10k', [i % 10 for i in range(5)])
    for name in fashion_mnist.FILES:
        with open(tmp_path / name, 'rb') as src, gzip.open(package / f'{name}.gz', 'wb') as dst:
            dst.write(src.read())
    monkeypatch.setattr(fashion_mnist, 'DEBIAN_DIR', str(package))
    dataset = FashionMNISTWithVal(str(tmp_path / 'extracted'), split='test',
                                  test_mode=True)
    assert len(dataset) == 5
