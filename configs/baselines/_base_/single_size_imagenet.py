# Shared by the individually trained baselines: the SAN ImageNet recipe (same schedule, same
# multi-size evaluation protocol, so the numbers sit in the same tables) for a plain mmpretrain
# model trained at one size, with mmpretrain's usual mean/std input normalisation.
_base_ = ['../../_base_/san_imagenet_bs32.py']

data_preprocessor = dict(
    _delete_=True,
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
# A plain model has no private BN to prepare.
custom_hooks = [dict(type='LosslessResumeHook', interval=1000)]
val_cfg = dict(test_sizes=[224])
test_cfg = dict(test_sizes=[224])
