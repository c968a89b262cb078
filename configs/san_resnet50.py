# SAN ResNet-50 on ImageNet, the reference recipe (as configs/san_resnet18.py; Bottleneck blocks,
# every block conv and projection shortcut generated).
# Reference numbers (top-1 at 224/192/160/128/96):
#   individually trained ResNet-50 baselines  77.150 / 76.406 / 75.312 / 73.526 / 70.610
#   RS-Net ResNet-50 (peer)                   79.3 / 78.8 / 77.9 / 76.3 / 72.7
#   SAN ResNet-50 (paper Table 1)             not verified here (no ImageNet run).
_base_ = ['./san_resnet18.py']

model = dict(
    backbone=dict(depth=50),
    head=dict(in_channels=2048))
