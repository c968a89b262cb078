# Ablation: SAN resnet18 without scale distillation (cross-entropy at every size only).
# Compare with configs/san_resnet18.py to isolate what distillation adds.
_base_ = ['../san_resnet18.py']

model = dict(distill=None)
