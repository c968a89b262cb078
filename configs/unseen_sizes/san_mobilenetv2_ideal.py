# Paper Table 2 (left): ideal inference for SAN mobilenetv2 at the unseen sizes 208/176/144/112: the
# encoding is computed for the test size itself (0.65/0.55/0.45/0.35), BN from the nearest
# training size.  python tools/test.py configs/unseen_sizes/san_mobilenetv2_ideal.py CKPT
_base_ = ['../san_mobilenetv2.py']

test_sizes = [208, 176, 144, 112]
test_cfg = dict(test_sizes=test_sizes)
model = dict(backbone=dict(inference_mode='ideal'))
