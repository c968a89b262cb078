# Supplementary Table 6: data-free ideal inference for SAN resnet50 at 208/176/144/112: BN parameters
# and statistics interpolated between the neighbouring training sizes (alpha = 0.5 at these sizes).
_base_ = ['./san_resnet50_ideal.py']

model = dict(backbone=dict(inference_mode='data_free'))
