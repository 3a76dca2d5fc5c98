"""Contract cases for operator algebra: the real-to-complex embedding and compositions."""

import torch

from invsolve.operators import (
    Composition,
    LinearComposition,
    ParallelBeamCT,
    RealToComplex,
    SingleCoilMRI,
    variable_density_mask,
)


def real_to_complex(dtype):
    return RealToComplex((1, 8, 8), dtype=dtype)


def mri_of_real_image(dtype):
    mask = variable_density_mask((16, 16), acceleration=4, center_fraction=0.125, seed=0)
    return SingleCoilMRI(mask, dtype=dtype) @ RealToComplex((1, 16, 16), dtype=dtype)


def ct_then_embedding(dtype):
    ct = ParallelBeamCT(torch.linspace(0, 3.0, 5), 16, dtype=dtype)
    return RealToComplex(ct.y_shape, dtype=dtype) @ ct


def autograd_composition(dtype):
    mask = variable_density_mask((16, 16), acceleration=4, center_fraction=0.125, seed=0)
    return Composition(SingleCoilMRI(mask, dtype=dtype), RealToComplex((1, 16, 16), dtype=dtype))


CASES = {
    "RealToComplex": (real_to_complex, True),
    "LinearComposition-mri-real": (mri_of_real_image, True, LinearComposition),
    "LinearComposition-embed-ct": (ct_then_embedding, True, LinearComposition),
    "Composition-autograd": (autograd_composition, True, Composition),
}
