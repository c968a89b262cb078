# tiny_san_resnet18.py in float64 (parameters, buffers, images), for tests that compare two training
# runs which must agree up to rounding (tests/data/float64_san.py).
_base_ = ['tiny_san_resnet18.py']
custom_imports = dict(imports=['san_mm', 'tests.data.float64_san'], allow_failed_imports=False)
model = dict(type='Float64SANClassifier')
