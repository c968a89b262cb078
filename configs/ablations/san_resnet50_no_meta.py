# Ablation: SAN resnet50 without the meta network: one shared kernel per conv for every size,
# private BN and dense scale distillation kept (the RS-Net-style model). Compare with
# configs/san_resnet50.py to isolate what generated kernels add.
_base_ = ['../san_resnet50.py']

model = dict(backbone=dict(use_meta_network=False))
