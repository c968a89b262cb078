# Individually trained baseline on Fashion-MNIST: the same ResNet-18 (width 16, same stem) with
# one kernel and one BN per layer, i.e. a plain ResNet, trained at one size only (28 by default;
# `--cfg-options train_sizes=[20]` trains at 20). With one size, ResolutionSample is a random
# resized crop + flip, and SANClassifier is plain cross-entropy training.
_base_ = ['./san_resnet18_fmnist.py']

train_sizes = [28]
model = dict(
    backbone=dict(train_sizes=train_sizes, use_meta_network=False),
    distill=None)
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='ResolutionSample', sizes=train_sizes, crop_ratio_range=(0.5, 1.0)),
    dict(type='PackInputs'),
]))
val_cfg = dict(test_sizes=train_sizes)
