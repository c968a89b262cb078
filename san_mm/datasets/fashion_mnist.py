"""Put Fashion-MNIST where mmpretrain's ``FashionMNIST`` dataset reads it."""
import gzip
import os
import os.path as osp
import shutil
import subprocess
from typing import Optional

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def prepare_fashion_mnist(data_root: str = 'data/fashion_mnist',
                          source: str = DEBIAN_DIR,
                          install: bool = True,
                          log=print) -> Optional[str]:
    """Extract the Fashion-MNIST IDX files into ``data_root``.

    Uses the Debian package's files when present (installing the package
    with apt-get first when ``install`` and this process may). If neither
    works, returns None and mmpretrain's dataset downloads the files on first
    use (``download=True``).

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
        log(f'no Fashion-MNIST files in {source}; mmpretrain will download '
            f'them into {data_root} on first use')
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
