# SAN ResNet-50 fine-tuned from mmpretrain's resnet50_8xb32_in1k (76.55 top-1 at 224); see
# configs/finetune/san_resnet18_from_mmpretrain.py for the recipe.
_base_ = ['../san_resnet50.py']

model = dict(init_cfg=dict(
    type='PretrainedFromPlain',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet50_8xb32_in1k_20210831-ea4938fc.pth'))
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = dict(end=30, T_max=30)
train_cfg = dict(max_epochs=30)
