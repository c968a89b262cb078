# Individually trained ResNet-50 baseline: mmpretrain's own model and ImageNet data, SAN schedule.
_base_ = ['mmpretrain::_base_/models/resnet50.py', './single_size_imagenet.py']
