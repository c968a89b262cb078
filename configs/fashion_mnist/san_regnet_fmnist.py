# A second family on Fashion-MNIST (docs/results.md, "Beyond ResNet"): a small RegNet (grouped
# bottlenecks, widths 24/48/96/192, 0.53 M parameters, 4.7 MMACs at 28 px) made scale-adaptive by
# the same one-line wrapper, trained with the demo's recipe (chosen on the validation split for the
# ResNet-18: 10 epochs, crop (0.65, 1), lr 0.1, batch 128). RegNet's `strides` set the first stage
# to stride 1, so the total stride is 16, as the demo's ResNet, and 28 px images keep 2 x 2 maps.
_base_ = ['./san_resnet18_fmnist_demo.py']

model = dict(
    backbone=dict(
        backbone=dict(
            _delete_=True,
            type='RegNet',
            arch=dict(w0=24, wa=24, wm=2.0, group_w=8, depth=10, bot_mul=1.0),
            in_channels=1,
            stem_channels=16,
            strides=(1, 2, 2, 2),
            zero_init_residual=False)),
    head=dict(in_channels=192),
    channels_last=False)
