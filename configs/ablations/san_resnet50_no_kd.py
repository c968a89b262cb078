# Ablation: SAN resnet50 without scale distillation (cross-entropy at every size only).
# Compare with configs/san_resnet50.py to isolate what distillation adds.
_base_ = ['../san_resnet50.py']

model = dict(distill=None)
