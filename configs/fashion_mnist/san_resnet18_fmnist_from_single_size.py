# Fine-tune SAN from a plain network trained at 28 only (configs/fashion_mnist/
# resnet18_fmnist_single_size.py): B = its kernels, A = 0, its BN in every set, its head; then
# 2 epochs at all five sizes with lr 0.02. Set `checkpoint` to the plain run's checkpoint.
_base_ = ['./san_resnet18_fmnist.py']

model = dict(init_cfg=dict(
    type='PretrainedFromPlain',
    checkpoint='work_dirs/resnet18_fmnist_single_size/epoch_3.pth'))
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = dict(end=2, T_max=2)
train_cfg = dict(max_epochs=2)
