"""Contract cases for the MRI operators: single/multi coil, 2D (16x16) and 3D (4x16x16), float64 supported."""

import torch

from invsolve.operators import (
    MultiCoilMRI,
    SingleCoilMRI,
    synthetic_coil_maps,
    variable_density_mask,
    variable_density_mask_2d,
)


def _mask_2d() -> torch.Tensor:
    return variable_density_mask((16, 16), acceleration=4, center_fraction=0.125, seed=0)


def _mask_3d() -> torch.Tensor:
    return variable_density_mask_2d((16, 16), acceleration=4, center_fraction=0.125, seed=0)


def single_2d(dtype):
    return SingleCoilMRI(_mask_2d(), dtype=dtype)


def single_3d(dtype):
    return SingleCoilMRI(_mask_3d(), img_size=(4, 16, 16), dtype=dtype)


def single_3d_full_mask(dtype):
    g = torch.Generator().manual_seed(0)
    return SingleCoilMRI(torch.rand(4, 16, 16, generator=g) < 0.3, dtype=dtype)


def multi_2d(dtype):
    return MultiCoilMRI(_mask_2d(), synthetic_coil_maps(3, (16, 16), dtype), dtype=dtype)


def multi_3d(dtype):
    return MultiCoilMRI(_mask_3d(), synthetic_coil_maps(3, (4, 16, 16), dtype), dtype=dtype)


CASES = {
    "SingleCoilMRI-2d": (single_2d, True),
    "SingleCoilMRI-3d": (single_3d, True),
    "SingleCoilMRI-3d-full-mask": (single_3d_full_mask, True),
    "MultiCoilMRI-2d": (multi_2d, True),
    "MultiCoilMRI-3d": (multi_3d, True),
}
