# SAN MobileNetV2 on ImageNet, the reference recipe: every conv generated (stem and final 1x1
# included), private BN, dense scale distillation, SGD momentum 0.9, lr 0.05, wd 4e-5, batch 256,
# cosine per iteration, 150 epochs, [0, 1] inputs. Linear layers (meta and classifier) ~ N(0, 0.01).
# Tested at 224...96 in steps of 16, the sizes of the MutualNet comparison; 208/176/144/112 were
# not trained on and run with the inference mode below (proxy by default).
# Reference numbers, top-1 at 224/208/192/176/160/144/128/112/96 (MFLOPs 300/270/221/195/154/133/99/82/56):
#   SAN MobileNetV2   72.86 / 72.42 / 72.22 / 71.63 / 71.16 / 69.80 / 69.14 / 66.59 / 65.07
#   MutualNet         73.0 / 72.4 / 71.9 / 71.5 / 70.2 / 69.9 / 67.8 / 66.1 / 64.3
#   individually trained MobileNetV2 at 224/192/160/128/96: 72.192 / 71.076 / 69.504 / 66.740 / 62.696
_base_ = ['./_base_/san_imagenet_bs32.py']

test_sizes = [224, 208, 192, 176, 160, 144, 128, 112, 96]
test_cfg = dict(type='MultiSizeTestLoop', test_sizes=test_sizes)

model = dict(
    type='SANClassifier',
    backbone=dict(
        type='MetaMobileNetV2',
        widen_factor=1.0,
        train_sizes={{_base_.train_sizes}},
        inference_mode={{_base_.inference_mode}}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)),
    distill=dict(type='ScaleDistillLoss', mode='dense', temperature=1.0),
    loss_reduction='sum')

optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=4e-5))
param_scheduler = dict(end=150, T_max=150)
train_cfg = dict(max_epochs=150)
