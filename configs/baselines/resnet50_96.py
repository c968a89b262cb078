# resnet50 trained at 96 only: the individually trained baseline SAN is compared with at 96
# (reference top-1 70.610).
_base_ = ['./_base_/resnet50.py']

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=96),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_sizes = [96]
val_cfg = dict(test_sizes=test_sizes)
test_cfg = dict(test_sizes=test_sizes)
