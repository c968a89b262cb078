# Turn mmpretrain's own ResNet-18 (resnet18_8xb32_in1k, 69.90 top-1 at 224) into a SAN ResNet-18:
# every generated conv starts as B = the pretrained kernel, A = 0, every private BN set as the
# pretrained BN, the head is kept, so at every size training starts from exactly the plain model;
# then a short fine-tuning at all five sizes with dense scale distillation (30 epochs, lr 0.01,
# cosine) instead of 120 epochs from scratch. The checkpoint is downloaded by mmengine when training
# starts; point `checkpoint` at a local file to use your own plain model.
_base_ = ['../san_resnet18.py']

model = dict(init_cfg=dict(
    type='PretrainedFromPlain',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
    'resnet18_8xb32_in1k_20210831-fbbb1da6.pth'))
# The plain model was trained on mean/std-normalised inputs (not SAN's [0, 1]): keep them.
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = dict(end=30, T_max=30)
train_cfg = dict(max_epochs=30)
