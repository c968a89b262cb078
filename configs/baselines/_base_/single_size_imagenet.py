# Shared by the individually trained baselines: a plain mmpretrain model trained at one size with
# the SAN schedule (SGD momentum 0.9, cosine per iteration, batch 256), evaluated with the same
# multi-size loop and ResizeCenterCrop protocol as SAN (so its numbers sit in the same tables).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['san_mm'], allow_failed_imports=False)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeCenterCrop', size=224, crop_ratio=0.875),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=32,
    num_workers=5,
    dataset=dict(
        type='ImageNet',
        data_root='data/imagenet',
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_cfg = dict(type='MultiSizeValLoop', test_sizes=[224])
test_cfg = dict(type='MultiSizeTestLoop', test_sizes=[224])
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='accuracy/top1@mean',
        rule='greater'))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4,
                   nesterov=False))
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=True, begin=0, end=120,
    T_max=120, convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=120, val_interval=1)
