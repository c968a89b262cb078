# mobilenetv2 trained at 192 only: the individually trained baseline SAN is compared with at 192
# (reference top-1 71.076).
_base_ = ['./_base_/mobilenetv2.py']

train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=192),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]))
test_sizes = [192]
val_cfg = dict(test_sizes=test_sizes)
test_cfg = dict(test_sizes=test_sizes)
