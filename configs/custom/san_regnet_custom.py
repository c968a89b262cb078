# SAN RegNetX-400MF on your own images: configs/custom/san_resnet18_custom.py with mmpretrain's
# RegNet (grouped bottlenecks, 4.8 M parameters) in the same one-line wrapper.
#   python tools/train.py configs/custom/san_regnet_custom.py \
#       --cfg-options data_root=data/my_images num_classes=5
# mmpretrain's RegNet checkpoints (converted from pycls) expect BGR inputs: starting from one, set
# data_preprocessor=dict(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395],
# to_rgb=False) as its config does (docs/any_backbone.md).
_base_ = ['./san_resnet18_custom.py']

model = dict(
    backbone=dict(
        backbone=dict(_delete_=True, type='RegNet', arch='regnetx_400mf')),
    head=dict(in_channels=384))
