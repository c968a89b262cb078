# SAN ResNet-18 on your own images (configs/_base_/datasets/custom_san.py: an ImageNet-style folder,
# `--cfg-options data_root=...`): mmpretrain's ResNet-18 made scale-adaptive by the one-line wrapper
# (the 7x7 stem conv shared, every other conv generated, every BN private per size), trained at
# 224/192/160/128/96 jointly with dense scale distillation.
#   python tools/train.py configs/custom/san_resnet18_custom.py \
#       --cfg-options data_root=data/my_images num_classes=5
# The joint loss is divided by the number of sizes (loss_reduction='mean'): with the reference's
# sum, lr 0.1 diverged on small data (Fashion-MNIST, docs/training.md). Starting from mmpretrain's
# ImageNet ResNet-18 instead of from scratch: docs/any_backbone.md.
_base_ = ['../_base_/datasets/custom_san.py']

model = dict(
    type='SANClassifier',
    backbone=dict(
        type='ScaleAdaptive',
        backbone=dict(type='ResNet', depth=18),
        train_sizes={{_base_.train_sizes}},
        generated_convs='all_but_stem',
        inference_mode={{_base_.inference_mode}}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )),
    distill=dict(type='ScaleDistillLoss', mode='dense', temperature=1.0),
    loss_reduction='mean')
