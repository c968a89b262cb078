# Fashion-MNIST (70,000 28x28 grayscale product photos, 10 classes) for SAN at small scale.
# FashionMNISTWithVal (mmpretrain's FashionMNIST with a held-out split) reads the extracted IDX files
# from data_root; missing, it extracts them from the Debian package dataset-fashion-mnist
# (tools/prepare_fashion_mnist.py installs it) or says what to do; it never downloads.
# Splits: train = the first 50,000 official training images, val = the last 10,000 (every choice
# is made on it, and the best checkpoint is picked on it), test = the 10,000 official test images
# (tools/test.py). `split='trainval'` trains on all 60,000.
# Sizes keep the paper's 224...96 ratio (2.33): train 28/24/20/16/12; unseen sizes 32/26/22/18/14/10.
dataset_type = 'FashionMNISTWithVal'
data_root = 'data/fashion_mnist'
train_sizes = [28, 24, 20, 16, 12]
test_sizes = [32, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10]

data_preprocessor = dict(
    type='SANDataPreprocessor',
    num_classes=10,
    mean=[72.94],  # Fashion-MNIST training-set statistics (0.286, 0.353) x 255
    std=[90.0],
    to_rgb=False)

# A milder crop than ImageNet's (0.08, 1): the garments fill 28 x 28 images.
train_pipeline = [
    dict(type='ResolutionSample', sizes=train_sizes, crop_ratio_range=(0.5, 1.0)),
    dict(type='PackInputs'),
]
# crop_ratio=1.0: the whole image resized to the test size (nothing to crop at 28 px).
test_pipeline = [
    dict(type='ResizeCenterCrop', size=28, crop_ratio=1.0),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 test_mode=False, download=False, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 test_mode=True, download=False, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 test_mode=True, download=False, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
