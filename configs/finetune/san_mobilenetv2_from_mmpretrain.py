# SAN MobileNetV2 fine-tuned from mmpretrain's mobilenet-v2_8xb32_in1k (71.86 top-1 at 224):
# generated kernels start at B = pretrained, A = 0; 30 epochs, lr 0.005, cosine.
_base_ = ['../san_mobilenetv2.py']

model = dict(init_cfg=dict(
    type='PretrainedFromPlain',
    checkpoint='https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/'
    'mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth'))
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
optim_wrapper = dict(optimizer=dict(lr=0.005))
param_scheduler = dict(end=30, T_max=30)
train_cfg = dict(max_epochs=30)
