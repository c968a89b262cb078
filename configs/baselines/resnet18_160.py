# resnet18 trained at 160 only: the individually trained baseline SAN is compared with at 160
# (reference top-1 68.482).
_base_ = ['./_base_/resnet18.py']

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=160),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_sizes = [160]
val_cfg = dict(test_sizes=test_sizes)
test_cfg = dict(test_sizes=test_sizes)
