# The demo's recipe on a tiny scale, for the test that runs `make demo`'s steps and the commands it
# prints next: width 4, 256 images for training and testing, 64 for validation, one epoch.
_base_ = ['../../configs/fashion_mnist/san_resnet18_fmnist_demo.py']

model = dict(
    backbone=dict(backbone=dict(stem_channels=4, base_channels=4)),
    head=dict(in_channels=32),
    channels_last=False)
train_dataloader = dict(batch_size=64, dataset=dict(indices=256))
val_dataloader = dict(dataset=dict(indices=64))  # what the sweep evaluates, at 11 sizes x 4 modes
test_dataloader = dict(dataset=dict(indices=256))
param_scheduler = dict(end=1, T_max=1)
train_cfg = dict(max_epochs=1, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
