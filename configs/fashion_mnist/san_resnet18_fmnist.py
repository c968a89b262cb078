# The base of the Fashion-MNIST configs (the demo, `make demo`, trains san_resnet18_fmnist_demo.py, which inherits it):
# Training sizes 28/24/20/16/12 jointly, dense scale distillation, private BN, generated block convs.
# Width 16, 3x3 stride-2 stem without max-pool (28 px images), batch 128, SGD momentum 0.9,
# lr 0.1, cosine, 3 epochs on the first 12,800 training images: about 4 minutes on 2 cores.
# Two departures from the ImageNet recipe, both measured on this data (docs/training.md): the joint
# loss is divided by the number of sizes (loss_reduction='mean'; with the reference's sum, lr 0.1
# and batch 128 this small model can diverge to chance), and the generated convs start as the plain
# ResNet is initialised (Kaiming), A = 0 (ScaleAdaptive's meta_init='plain'): the reference's
# U(-1, 1) init makes kernels ~5x larger than Kaiming's, which behind BN divides the effective
# learning rate and stalls a short schedule.
_base_ = [
    '../_base_/datasets/fashion_mnist_san.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['san_mm'], allow_failed_imports=False)
inference_mode = 'proxy'
train_sizes = {{_base_.train_sizes}}

model = dict(
    type='SANClassifier',
    # Any mmpretrain CNN becomes scale-adaptive by wrapping it: here a ResNet-18 whose stem suits
    # 28 px images. The stem conv stays shared, every other conv is generated, every BN private.
    backbone=dict(
        type='ScaleAdaptive',
        backbone=dict(
            type='ResNetCustomStem',
            depth=18,
            in_channels=1,
            stem_channels=16,
            base_channels=16,
            stem_kernel_size=3,
            stem_stride=2,
            stem_pool=False,
            zero_init_residual=False),
        train_sizes=train_sizes,
        generated_convs='all_but_stem',
        inference_mode=inference_mode),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
        init_cfg=None),
    distill=dict(type='ScaleDistillLoss', mode='dense', temperature=1.0),
    loss_reduction='mean')

train_dataloader = dict(dataset=dict(indices=12800))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    type='CosineAnnealingLR', by_epoch=True, begin=0, end=3, T_max=3,
    convert_to_iter_based=True)
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=3, val_interval=1)
val_cfg = dict(type='MultiSizeValLoop', test_sizes=train_sizes)
test_cfg = dict(type='MultiSizeTestLoop', test_sizes={{_base_.test_sizes}})
custom_hooks = [
    dict(type='PerSizeBNHook'),
    dict(type='LosslessResumeHook', interval=50),  # 100 iterations per epoch
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='accuracy/top1@mean',
        rule='greater'))
randomness = dict(seed=0, deterministic=False)
