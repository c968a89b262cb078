# SAN on ImageNet, the reference recipe's data, evaluation and runtime (8 GPUs x 32 = 256 images
# per iteration). Each experiment sets the model and the schedule numbers.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['san_mm'], allow_failed_imports=False)

# Sizes: every image is trained at all train_sizes at once (largest first); test_sizes are the
# sizes one test run evaluates (`--cfg-options test_sizes=[...]` changes them); inference_mode
# decides how sizes that were not trained on run (proxy | ideal | calibrated | data_free).
train_sizes = [224, 192, 160, 128, 96]
test_sizes = [224, 192, 160, 128, 96]
inference_mode = 'proxy'

# The reference feeds [0, 1] inputs without mean/std normalisation (its weights need that).
data_preprocessor = dict(
    type='SANDataPreprocessor',
    num_classes=1000,
    mean=[0., 0., 0.],
    std=[255., 255., 255.],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResolutionSample', sizes=train_sizes, crop_ratio_range=(0.08, 1.0)),
    dict(type='PackInputs'),
]
# ResizeCenterCrop.size is set by the multi-size loops for each evaluated size:
# shorter side to int(size / 0.875), centre crop size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeCenterCrop', size=224, crop_ratio=0.875),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    dataset=dict(pipeline=train_pipeline),
    collate_fn=dict(type='default_collate'))
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

val_cfg = dict(type='MultiSizeValLoop', test_sizes=train_sizes)
test_cfg = dict(type='MultiSizeTestLoop', test_sizes=test_sizes)
# LosslessResumeHook: random generator states in every checkpoint and a checkpoint every 1000
# iterations inside an epoch, so `--resume` after a kill continues exactly (docs/training.md).
custom_hooks = [
    dict(type='PerSizeBNHook'),
    dict(type='LosslessResumeHook', interval=1000),
]

# The reference keeps the epoch with the best mean top-1 over the sizes.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='accuracy/top1@mean',
        rule='greater'))

# SGD momentum 0.9 (not Nesterov), weight decay on every parameter, cosine decay per iteration,
# no warmup. The experiments set lr, weight_decay and the number of epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4,
                   nesterov=False))
param_scheduler = dict(
    type='CosineAnnealingLR', by_epoch=True, begin=0, end=120, T_max=120,
    convert_to_iter_based=True)
train_cfg = dict(
    _delete_=True,  # mmpretrain's schedule base sets by_epoch, which excludes a type
    type='ResumableEpochBasedTrainLoop', max_epochs=120, val_interval=1)
auto_scale_lr = dict(base_batch_size=256)
