# Ablation: SAN mobilenetv2 without scale distillation (cross-entropy at every size only).
# Compare with configs/san_mobilenetv2.py to isolate what distillation adds.
_base_ = ['../san_mobilenetv2.py']

model = dict(distill=None)
