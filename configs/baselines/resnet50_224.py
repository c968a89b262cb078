# resnet50 trained at 224 only: the individually trained baseline SAN is compared with at 224
# (reference top-1 77.150).
_base_ = ['./_base_/resnet50.py']

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_sizes = [224]
val_cfg = dict(test_sizes=test_sizes)
test_cfg = dict(test_sizes=test_sizes)
