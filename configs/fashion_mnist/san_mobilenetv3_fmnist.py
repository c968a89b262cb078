# A mobile family on Fashion-MNIST (docs/results.md, "Beyond ResNet"): mmpretrain's MobileNetV3-small
# (depthwise convs, squeeze-excitation, hard-swish; 0.93 M parameters) made scale-adaptive, every
# conv generated. Its strides are fixed (total stride 32), so the images are trained at twice the
# demo's sizes, 56/48/40/32/24 (the same 2.33 ratio), upsampled from 28 px; its stem reads RGB: the
# per-channel mean / std below broadcast each grayscale image to three channels. The demo's recipe
# (chosen on the validation split for the ResNet-18): 10 epochs, crop (0.65, 1), lr 0.1, batch 128.
_base_ = ['./san_resnet18_fmnist_demo.py']

train_sizes = [56, 48, 40, 32, 24]
test_sizes = [64, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20]
model = dict(
    backbone=dict(
        backbone=dict(_delete_=True, type='MobileNetV3', arch='small'),
        train_sizes=train_sizes,
        generated_convs='all'),
    head=dict(in_channels=576),
    channels_last=False)
data_preprocessor = dict(mean=[72.94] * 3, std=[90.0] * 3)
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='ResolutionSample', sizes=train_sizes, crop_ratio_range=(0.65, 1.0)),
    dict(type='PackInputs'),
]))
val_cfg = dict(test_sizes=train_sizes)
test_cfg = dict(test_sizes=test_sizes)
