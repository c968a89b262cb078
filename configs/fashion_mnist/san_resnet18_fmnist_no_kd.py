# Ablation on Fashion-MNIST: configs/fashion_mnist/san_resnet18_fmnist.py without scale distillation.
_base_ = ['./san_resnet18_fmnist.py']

model = dict(distill=None)
