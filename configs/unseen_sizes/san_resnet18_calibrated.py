# Paper Table 2 (middle): ideal inference + post-hoc BN calibration for SAN resnet18 at 208/176/144/112:
# BN statistics for each size recomputed from 256 training images, once (PerSizeBNHook; to keep
# them, calibrate into a checkpoint with tools/calibrate_bn.py and test that).
_base_ = ['./san_resnet18_ideal.py']

model = dict(backbone=dict(inference_mode='calibrated'))
custom_hooks = [dict(type='PerSizeBNHook', inference_mode='calibrated', calibration_images=256)]
