"""Test-only float64 ``SANClassifier``, for tests that compare two training
runs which must agree up to rounding (e.g. joint vs per-size backward under
DDP). In float32 that rounding, amplified over a few steps by BN over as few
as 4 values, reaches relative errors of 1e-4 on near-zero BN biases, close to
any bound that still catches real bugs; in float64 it stays below 1e-11.
Used through ``tiny_san_resnet18_float64.py`` (``custom_imports``)."""
from mmpretrain.registry import MODELS

from san_mm.models import SANClassifier
from san_mm.models.utils import SANDataPreprocessor


@MODELS.register_module()
class Float64SANDataPreprocessor(SANDataPreprocessor):
    """``SANDataPreprocessor`` whose images are float64 (mmpretrain's
    preprocessing always makes float32 images)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs = data['inputs']
        data['inputs'] = (inputs.double() if hasattr(inputs, 'double') else
                          [x.double() for x in inputs])
        return data


@MODELS.register_module()
class Float64SANClassifier(SANClassifier):
    """``SANClassifier`` with float64 parameters, buffers and images."""

    def __init__(self, *args, data_preprocessor=None, **kwargs):
        data_preprocessor = dict(data_preprocessor or {},
                                 type='Float64SANDataPreprocessor')
        super().__init__(*args, data_preprocessor=data_preprocessor, **kwargs)
        self.double()
