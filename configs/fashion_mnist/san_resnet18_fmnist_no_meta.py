# Ablation on Fashion-MNIST: no meta network (one shared kernel per conv, private BN and dense
# distillation kept: RS-Net style).
_base_ = ['./san_resnet18_fmnist.py']

model = dict(backbone=dict(use_meta_network=False))
