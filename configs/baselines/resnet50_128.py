# resnet50 trained at 128 only: the individually trained baseline SAN is compared with at 128
# (reference top-1 73.526).
_base_ = ['./_base_/resnet50.py']

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=128),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_sizes = [128]
val_cfg = dict(test_sizes=test_sizes)
test_cfg = dict(test_sizes=test_sizes)
