"""Volume problems for 3D reconstruction with a 2D prior (:func:`invsolve.samplers.mbir3d`).

A stack of slices on the prior's grid, ``truth (1, 1, D, n, n)``, is measured by the 3D version of an
operator spec: ``ct`` -> :class:`~invsolve.operators.ParallelBeamCT3D` (every slice with the same
views; sparse-view or limited-angle with ``arc``), ``mri`` -> 3D Cartesian MRI (3D FFT) through
``RealToComplex``: with a column mask, one ``(n, n)`` mask for every slice (the depth axis fully
sampled as the readout); with ``mask=poisson-disc`` a 3D ``(D, n, n)`` mask, Poisson-disc points of the
``(k_z, k_y)`` plane with every ``k_x`` (slices coupled through ``k_z``). Noise as for images: ``sigma_y = noise * RMS(A x)``.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.pipeline.operator_specs import OperatorSpec, mri_columns
from invsolve.pipeline.problems import Problem
from invsolve.tasks import _magnitude

VOLUME_KINDS = ("ct", "mri")


def volume_problem(truth: torch.Tensor, spec: OperatorSpec, *, mask_seed: int, noise_seed: int,
                   device: torch.device | str = "cpu") -> Problem:
    """Measure a volume ``truth (1, 1, D, n, n)`` with the 3D operator of ``spec`` (see the module docstring)."""
    from invsolve import operators as ops

    if spec.kind not in VOLUME_KINDS:
        raise ValueError(f"3D reconstruction supports the operators {list(VOLUME_KINDS)}, got {spec.kind!r}")
    if truth.dim() != 5 or truth.shape[:2] != (1, 1) or truth.shape[-1] != truth.shape[-2]:
        raise ValueError(f"truth must be a volume (1, 1, D, n, n), got {tuple(truth.shape)}")
    _, _, depth, n, _ = truth.shape
    truth = truth.to(device)
    if spec.kind == "ct":
        op = ops.ParallelBeamCT3D(ops.sparse_view_angles(spec["views"], spec["arc"]), (depth, n, n), device=device)
        baseline, name, tv = op.fbp, "FBP", 0.1
    else:
        if spec["mask"] == "active" or spec["coils"]:
            raise ValueError("3D MRI supports fixed single-coil masks (mask=equispaced|random|variable-density|variance|"
                             "poisson-disc)")
        if spec["mask"] == "poisson-disc":
            plane = ops.poisson_disc_mask((depth, n), spec["acceleration"], spec["center_fraction"], mask_seed)
            mask = plane[:, :, None].expand(depth, n, n).contiguous().to(device)
        else:
            mask = mri_columns(spec, n, mask_seed).float().expand(n, n).clone().to(device)
        mri = ops.SingleCoilMRI(mask, (depth, n, n), device=device)
        op = mri @ ops.RealToComplex((1, depth, n, n), device=device)

        def baseline(y: torch.Tensor) -> torch.Tensor:
            return _magnitude(mri.zero_filled(y))

        name, tv = "zero-filled", 0.01
    with torch.no_grad():
        clean = op.A(truth)
    noise = GaussianNoise(spec["noise"] * float(clean.square().mean().sqrt()))
    y = noise.sample(clean, torch.Generator(device=device).manual_seed(noise_seed))
    return Problem(truth, Measurement(op, noise, y), baseline, name, tv, spec.kind, lambda y: y[0, 0, 0],
                   info={"sigma_y": noise.sigma})
