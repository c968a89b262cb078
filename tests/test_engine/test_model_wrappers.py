import pytest
from mmpretrain.registry import MODELS

from san_mm.engine import SANDistributedDataParallel


def test_ddp_wrapper_refuses_a_cuda_graph_step():
    model = MODELS.build(dict(
        type='SANClassifier',
        backbone=dict(type='MetaResNet', depth=18, stem_channels=4,
                      base_channels=4, train_sizes=[32, 24]),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=32),
        cuda_graph_step=True))
    # refused before DDP needs a process group
    with pytest.raises(ValueError, match='cuda_graph_step=False for '
                       'distributed training'):
        SANDistributedDataParallel(module=model)
