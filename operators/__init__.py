"""Forward operators, importable as ``invsolve.operators``.

Every operator maps ``(B, *x_shape) -> (B, *y_shape)`` and linear ones have an
exact adjoint. They are built on deepinv's physics.

Complex data convention: a complex array is a real tensor whose channel axis
(axis 1) has size 2, holding (real, imaginary). The real inner product of two
such tensors equals ``Re <u, v>``, so ``A_adjoint`` is the complex adjoint.
"""

from invsolve.operators.base import DeepinvLinearOperator, LinearOperator, Operator, conjugate_gradient
from invsolve.operators.matrix import MatrixOperator
from invsolve.operators.algebra import Composition, LinearComposition, RealToComplex, compose
from invsolve.operators.linalg import dense_matrix, dense_svd, frobenius_norm_sq
from invsolve.operators.blur import Blur, gaussian_kernel, motion_kernel
from invsolve.operators.inpainting import Inpainting
from invsolve.operators.super_resolution import SuperResolution
from invsolve.operators.masks import (
    fastmri_mask,
    kspace_variance_mask,
    mask_acceleration,
    poisson_disc_mask,
    synthetic_coil_maps,
    variable_density_mask,
    variable_density_mask_2d,
)
from invsolve.operators.mri import MultiCoilMRI, SingleCoilMRI
from invsolve.operators.nonlinear import FourierMagnitude
from invsolve.operators.ct import (
    FanBeamCT,
    ParallelBeamCT,
    ParallelBeamCT3D,
    limited_angle_angles,
    sparse_view_angles,
)

__all__ = [
    # image domain (operators/inpainting.py, super_resolution.py, blur.py)
    "Blur",
    "Inpainting",
    "SuperResolution",
    "gaussian_kernel",
    "motion_kernel",
    # MRI (operators/mri.py, operators/masks.py)
    "MultiCoilMRI",
    "SingleCoilMRI",
    "fastmri_mask",
    "kspace_variance_mask",
    "mask_acceleration",
    "poisson_disc_mask",
    "synthetic_coil_maps",
    "variable_density_mask",
    "variable_density_mask_2d",
    # CT (operators/ct.py)
    "FanBeamCT",
    "ParallelBeamCT",
    "ParallelBeamCT3D",
    "limited_angle_angles",
    "sparse_view_angles",
    # nonlinear (operators/nonlinear.py)
    "FourierMagnitude",
    # algebra and dense linear algebra (operators/algebra.py, operators/linalg.py)
    "Composition",
    "LinearComposition",
    "RealToComplex",
    "compose",
    "dense_matrix",
    "dense_svd",
    "frobenius_norm_sq",
    "DeepinvLinearOperator",
    "LinearOperator",
    "MatrixOperator",
    "Operator",
    "conjugate_gradient",
]

from invsolve.operators.coil_sensitivity import calibration_region, estimate_coil_maps  # noqa: E402

__all__ += ["calibration_region", "estimate_coil_maps"]
