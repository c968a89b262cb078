# Individually trained ResNet-18 baseline: mmpretrain's own model and ImageNet data, SAN schedule.
_base_ = ['mmpretrain::_base_/models/resnet18.py', './single_size_imagenet.py']
