# A tiny SAN ResNet-18 for CPU tests: configs/san_resnet18.py with 4-channel stages, three small
# training sizes and an image folder (CustomDataset) whose root the tests pass with --cfg-options.
_base_ = ['../../configs/san_resnet18.py']

train_sizes = [32, 24, 18]
test_sizes = [32, 24, 18]
data_root = 'set-by-the-tests'

model = dict(
    backbone=dict(stem_channels=4, base_channels=4, train_sizes=train_sizes),
    head=dict(num_classes=3, in_channels=32, topk=(1, )),
    loss_reduction='mean')
data_preprocessor = dict(num_classes=3)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResolutionSample', sizes=train_sizes, crop_ratio_range=(0.5, 1.0)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeCenterCrop', size=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

val_cfg = dict(test_sizes=train_sizes)
test_cfg = dict(test_sizes=test_sizes)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = dict(end=2, T_max=2)
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0, deterministic=False)
