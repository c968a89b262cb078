# SAN ResNet-18 on ImageNet (Li, Yao, Chen, ECCV 2020), the reference recipe:
# sizes 224/192/160/128/96 trained jointly, generated block convs (W(s) = B + s*A), private BN,
# dense top-down scale distillation (5 CE + 10 KL, summed), SGD momentum 0.9, lr 0.1, wd 1e-4,
# batch 8x32 = 256, cosine per iteration, 120 epochs, [0, 1] inputs.
# Reference numbers (top-1 at 224/192/160/128/96):
#   individually trained ResNet-18 baselines  70.974 / 69.754 / 68.482 / 66.360 / 62.560
#   RS-Net ResNet-18 (peer)                   73.1 / 72.2 / 71.1 / 68.7 / 64.1
#   SAN ResNet-18 (paper Table 1)             not verified here (no ImageNet run).
_base_ = ['./_base_/san_imagenet_bs32.py']

model = dict(
    type='SANClassifier',
    backbone=dict(
        type='MetaResNet',
        depth=18,
        train_sizes={{_base_.train_sizes}},
        inference_mode={{_base_.inference_mode}}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
        init_cfg=None),  # the reference keeps PyTorch's default Linear init
    distill=dict(type='ScaleDistillLoss', mode='dense', temperature=1.0),
    loss_reduction='sum')
