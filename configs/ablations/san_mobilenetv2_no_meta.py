# Ablation: SAN mobilenetv2 without the meta network: one shared kernel per conv for every size,
# private BN and dense scale distillation kept (the RS-Net-style model). Compare with
# configs/san_mobilenetv2.py to isolate what generated kernels add.
_base_ = ['../san_mobilenetv2.py']

model = dict(backbone=dict(use_meta_network=False))
