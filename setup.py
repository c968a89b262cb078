import os.path as osp

from setuptools import find_packages, setup


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


version = {}
with open(osp.join(osp.dirname(__file__), 'san_mm', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='san_mm',
    version=version['__version__'],
    description='Scale Adaptive Networks (SAN, ECCV 2020) for MMPretrain',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['san_mm', 'san_mm.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    zip_safe=False,
)
