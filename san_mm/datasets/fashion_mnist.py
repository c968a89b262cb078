"""Fashion-MNIST: put the files where mmpretrain reads them; a validation split held out from training."""
import gzip
import os
import os.path as osp
import shutil
import subprocess
from typing import Optional

from mmpretrain.datasets import FashionMNIST
from mmpretrain.registry import DATASETS

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the config says; the message says
    where they are expected and what to do (the tools print it without a
    traceback)."""


def prepare_fashion_mnist(data_root: str = 'data/fashion_mnist',
                          source: str = DEBIAN_DIR,
                          install: bool = True,
                          log=print) -> Optional[str]:
    """Extract the Fashion-MNIST IDX files into ``data_root``.

    Uses the Debian package's files when present (installing the package
    with apt-get first when ``install`` and this process may). If neither
    works, returns None.

    Returns:
        str | None: Where the files came from, or None.
    """
    if all(osp.isfile(osp.join(data_root, name)) for name in FILES):
        return data_root
    if not osp.isdir(source) and install and _can_apt_install():
        log(f'installing {DEBIAN_PACKAGE} (Fashion-MNIST) with apt-get ...')
        subprocess.run(['apt-get', 'install', '-y', '-qq', DEBIAN_PACKAGE],
                       check=False)
    if not all(osp.isfile(osp.join(source, name + '.gz')) for name in FILES):
        log(f'no Fashion-MNIST files in {source}: install the Debian package '
            f'{DEBIAN_PACKAGE}, or put the IDX files into {data_root}')
        return None
    os.makedirs(data_root, exist_ok=True)
    for name in FILES:
        with gzip.open(osp.join(source, name + '.gz'), 'rb') as src, \
                open(osp.join(data_root, name), 'wb') as dst:
            shutil.copyfileobj(src, dst)
    log(f'extracted Fashion-MNIST from {source} into {data_root}')
    return source


def _can_apt_install() -> bool:
    return shutil.which('apt-get') is not None and hasattr(
        os, 'geteuid') and os.geteuid() == 0


#: The official 60,000 training images minus ``val_images`` held out for validation.
FASHION_MNIST_SPLITS = ('train', 'val', 'trainval', 'test')


@DATASETS.register_module()
class FashionMNISTWithVal(FashionMNIST):
    """Fashion-MNIST with a validation split held out from the training set.

    Model choices (epochs, learning rate, loss, augmentation) are made on
    ``val``; the official test images are read once per final run. The split
    is fixed and by position, so it is the same on every machine:

    ============  ====================================================
    ``train``     official training images ``[0, 60000 - val_images)``
    ``val``       official training images ``[60000 - val_images, 60000)``
    ``trainval``  all 60,000 official training images
    ``test``      the 10,000 official test images
    ============  ====================================================

    (With the default 10,000, ``val`` holds 955 to 1,050 images of each
    class.) ``indices`` applies within the split, e.g. ``indices=12800``
    is the first 12,800 images of ``train``.

    Args:
        data_root (str): Folder with the extracted IDX files
            (``tools/prepare_fashion_mnist.py`` puts them there; missing, they
            are extracted from the Debian package when it is installed).
        split (str): One of ``train``, ``val``, ``trainval``, ``test``.
        val_images (int): Size of ``val``. Defaults to 10,000.
        **kwargs: Other arguments of mmpretrain's ``FashionMNIST``
            (``test_mode``, ``pipeline``, ``indices``, ``download``, ...).
    """

    def __init__(self, data_root: str = '', split: str = 'train',
                 val_images: int = 10000, **kwargs):
        if split not in FASHION_MNIST_SPLITS:
            raise ValueError(
                f'unknown Fashion-MNIST split {split!r}; expected one of '
                f'{list(FASHION_MNIST_SPLITS)}: set the dataset\'s split to '
                "one of them ('val' is held out of the training images)")
        if not (isinstance(val_images, int) and 0 < val_images < 60000):
            raise ValueError('val_images must be an int in 1..59999 (taken '
                             'from the 60,000 training images), got '
                             f'{val_images!r}; set the dataset\'s val_images '
                             'in that range (default 10000)')
        self.holdout_split = split
        self.val_images = val_images
        if not kwargs.get('download') and data_root and not all(
                osp.isfile(osp.join(data_root, name)) for name in FILES):
            # The Debian package's files, else a message (nothing downloads).
            if prepare_fashion_mnist(data_root, source=DEBIAN_DIR, install=False,
                                     log=lambda message: None) is None:
                raise DataNotFoundError(
                    f'Fashion-MNIST is not in {data_root!r} (it needs '
                    f'{", ".join(FILES)}) and the Debian package '
                    f'{DEBIAN_PACKAGE} is not installed ({DEBIAN_DIR}): run '
                    '`python tools/prepare_fashion_mnist.py` (installs it '
                    'with apt-get as root), or point the config at the files '
                    'with --cfg-options data_root=DIR, or set the dataset\'s '
                    'download=True to fetch them')
        # mmpretrain's split only picks a warning (evaluating on training
        # images); held-out validation images are meant for evaluation.
        super().__init__(data_root=data_root,
                         split='train' if split in ('train', 'trainval')
                         else 'test', **kwargs)
        self.split = split

    def load_data_list(self):
        # mmpretrain's MNIST picks its files by test_mode, not by split;
        # here the split decides, so `val` can be evaluated in test mode.
        test_mode, self.test_mode = self.test_mode, self.holdout_split == 'test'
        try:
            data_list = super().load_data_list()
        finally:
            self.test_mode = test_mode
        first_val = len(data_list) - self.val_images
        if self.holdout_split != 'test' and first_val < 1:
            raise ValueError(
                f'val_images={self.val_images} leaves no training images: '
                f'the files in {self.data_prefix["root"]} hold '
                f'{len(data_list)}; set val_images below {len(data_list)}')
        if self.holdout_split == 'train':
            return data_list[:first_val]
        if self.holdout_split == 'val':
            return data_list[first_val:]
        return data_list
