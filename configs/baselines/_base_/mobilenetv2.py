# Individually trained MobileNetV2 baseline: mmpretrain's own model and ImageNet data, SAN's
# MobileNetV2 schedule (lr 0.05, wd 4e-5, 150 epochs, cosine).
_base_ = ['mmpretrain::_base_/models/mobilenet_v2_1x.py', './single_size_imagenet.py']
optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=4e-5))
param_scheduler = dict(end=150, T_max=150)
train_cfg = dict(max_epochs=150)
