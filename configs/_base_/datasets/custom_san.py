# SAN on your own images: the ImageNet recipe (configs/_base_/san_imagenet_bs32.py: sizes
# 224/192/160/128/96 trained jointly, per-size validation, calibration, lossless resume) on an
# ImageNet-style folder read by mmpretrain's CustomDataset, one sub-folder per class:
#   data_root/train/<class>/*.jpg|png|...   (training images)
#   data_root/val/<class>/*                 (validation: per-size accuracy, the best checkpoint,
#                                            the size table of tools/sweep_sizes.py)
# Class names are the sub-folder names (sorted); train/ and val/ must hold the same ones.
# Point the config at the folder with `--cfg-options data_root=/path/to/folder` (carried to every
# dataset). tools/test.py reads val/ too; a held-out test/ folder: `--cfg-options
# test_dataloader.dataset.data_prefix=test`.
_base_ = ['../san_imagenet_bs32.py']

dataset_type = 'CustomDataset'
data_root = 'data/custom'
# The number of class sub-folders. Set it here (in a copy of the config) or on the command line with
# `--cfg-options num_classes=N` (the tools carry it to the head and the preprocessor).
num_classes = 10

# mmpretrain's ImageNet mean/std (not the SAN reference's [0, 1] inputs), so that a plain
# mmpretrain checkpoint can start the model (PretrainedFromPlain, docs/any_backbone.md).
data_preprocessor = dict(
    type='SANDataPreprocessor',
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
# Top-1 only: top-5 needs at least 5 classes.
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
