"""The standard reconstruction tasks of the demo and of the quality bar, on real images ``(B, 1, H, W)``.

Five problems at the resolution of a prior (64x64 for the default one):

- ``CT 8 views`` / ``CT 16 views``: parallel-beam CT, equally spaced views over 180 degrees,
  baseline filtered back-projection;
- ``MRI 4x`` / ``MRI 8x``: single-coil Cartesian MRI with fastMRI equispaced masks (center
  fractions 0.08 / 0.04, as in the fastMRI challenge), applied to the real image through
  :class:`~invsolve.operators.RealToComplex`; baseline the magnitude of the zero-filled inverse FFT;
- ``Inpainting 50%``: half of the pixels observed, chosen uniformly; baseline the masked image.

Two more for sampler comparisons (``EXTRA_TASK_NAMES``): ``Gaussian deblur`` (Gaussian kernel of
standard deviation 1.5 px, FFT, circular boundary; baseline the blurred image) and ``SR 4x``
(bicubic-filtered 4x decimation; baseline bicubic interpolation of ``y``).

Noise is Gaussian with ``sigma_y = NOISE_LEVEL * RMS(A x)`` (RMS over the whole batch of clean
measurements). Each task also carries its TV weight, chosen by ``experiments/tune_tv_demo.py``
on phantoms that are used nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators import (
    Blur,
    Inpainting,
    LinearOperator,
    ParallelBeamCT,
    RealToComplex,
    SingleCoilMRI,
    SuperResolution,
    fastmri_mask,
    sparse_view_angles,
)

#: Relative measurement noise: ``sigma_y = NOISE_LEVEL * RMS(A x)``.
NOISE_LEVEL = 0.01

TASK_NAMES = ("CT 8 views", "CT 16 views", "MRI 4x", "MRI 8x", "Inpainting 50%")
#: Further tasks of the sampler comparisons (not in the demo).
EXTRA_TASK_NAMES = ("Gaussian deblur", "SR 4x")
ALL_TASK_NAMES = TASK_NAMES + EXTRA_TASK_NAMES

#: Seeds of :class:`~invsolve.datasets.training_data.EllipsePhantoms` streams, kept apart: the default
#: prior was trained on seed 0 and its denoising measured on seed 1.
TV_TUNING_SEED = 2
SAMPLER_TUNING_SEED = 3
EVALUATION_SEED = 4

#: TV weights per task from ``experiments/tune_tv_demo.py`` (table in experiments/results/tv_tuning.md).
TV_WEIGHTS = {"CT 8 views": 0.1, "CT 16 views": 0.2, "MRI 4x": 0.01, "MRI 8x": 0.01, "Inpainting 50%": 0.02,
              "Gaussian deblur": 0.002, "SR 4x": 0.002}


@dataclass(frozen=True)
class ReconstructionTask:
    """One inverse problem: its operator on real images, the classical baseline and how to show ``y``."""

    name: str
    operator: LinearOperator
    baseline_name: str
    baseline: Callable[[torch.Tensor], torch.Tensor]  # y -> (B, 1, H, W)
    show_measurement: Callable[[torch.Tensor], torch.Tensor]  # y (1, ...) -> 2-D image for a figure
    tv_weight: float

    def measure(self, truth: torch.Tensor, generator: torch.Generator) -> Measurement:
        """Simulate ``y = A x + n`` for ``truth (B, 1, H, W)`` at the relative noise level ``NOISE_LEVEL``."""
        with torch.no_grad():
            clean = self.operator.A(truth)
        noise = GaussianNoise(NOISE_LEVEL * float(clean.square().mean().sqrt()))
        return Measurement(self.operator, noise, noise.sample(clean, generator))

    @property
    def slug(self) -> str:
        """The name as a file stem, e.g. ``ct-8-views``."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def phantoms(seed: int, n: int, size: int, *, start: int = 0) -> torch.Tensor:
    """``n`` random-ellipse phantoms ``(n, 1, size, size)`` from the stream ``seed`` (items ``start..start+n-1``)."""
    from invsolve.datasets.training_data import EllipsePhantoms

    data = EllipsePhantoms(size, seed=seed)
    return torch.stack([data[start + i] for i in range(n)])


def _magnitude(z: torch.Tensor) -> torch.Tensor:
    """``(B, 2, ...)`` complex -> ``(B, 1, ...)`` magnitude."""
    return z.square().sum(dim=1, keepdim=True).sqrt()


def _log_kspace(y: torch.Tensor) -> torch.Tensor:
    mag = _magnitude(y)[0, 0]
    return torch.log1p(100 * mag / mag.max().clamp_min(torch.finfo(mag.dtype).tiny))


def ct_task(n_views: int, size: int, *, device, dtype, tv_weights: dict[str, float]) -> ReconstructionTask:
    op = ParallelBeamCT(sparse_view_angles(n_views), size, dtype=dtype, device=device)
    name = f"CT {n_views} views"
    return ReconstructionTask(name, op, "FBP", op.fbp, lambda y: y[0, 0], tv_weights[name])


def mri_task(acceleration: int, size: int, seed: int, *, device, dtype,
             tv_weights: dict[str, float]) -> ReconstructionTask:
    mask = fastmri_mask((size, size), acceleration, center_fraction=0.08 if acceleration == 4 else 0.04,
                        kind="equispaced", seed=seed)
    mri = SingleCoilMRI(mask.to(device), (size, size), dtype=dtype, device=device)
    op = mri @ RealToComplex((1, size, size), dtype=dtype, device=device)
    name = f"MRI {acceleration}x"
    return ReconstructionTask(name, op, "zero-filled", lambda y: _magnitude(mri.zero_filled(y)), _log_kspace,
                              tv_weights[name])


def inpainting_task(size: int, seed: int, *, device, dtype, tv_weights: dict[str, float]) -> ReconstructionTask:
    generator = torch.Generator().manual_seed(seed)
    op = Inpainting.random((1, size, size), 0.5, generator, dtype=dtype, device=device)
    name = "Inpainting 50%"
    return ReconstructionTask(name, op, "masked image", lambda y: y, lambda y: y[0, 0], tv_weights[name])


def deblur_task(size: int, *, device, dtype, tv_weights: dict[str, float]) -> ReconstructionTask:
    op = Blur.gaussian((1, size, size), 1.5, dtype=dtype, device=device)
    name = "Gaussian deblur"
    return ReconstructionTask(name, op, "blurred image", lambda y: y, lambda y: y[0, 0], tv_weights[name])


def super_resolution_task(size: int, *, device, dtype, tv_weights: dict[str, float]) -> ReconstructionTask:
    op = SuperResolution((1, size, size), 4, "bicubic", dtype=dtype, device=device)
    name = "SR 4x"

    def bicubic(y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(y, size=(size, size), mode="bicubic", align_corners=False)

    return ReconstructionTask(name, op, "bicubic", bicubic, lambda y: y[0, 0], tv_weights[name])


def standard_tasks(size: int, seed: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   names: tuple[str, ...] = TASK_NAMES,
                   tv_weights: dict[str, float] | None = None) -> list[ReconstructionTask]:
    """The tasks named in ``names`` (default: the five of the demo) for ``size x size`` images; ``seed`` draws the masks."""
    unknown = [n for n in names if n not in ALL_TASK_NAMES]
    if unknown:
        raise ValueError(f"unknown task name(s) {unknown}; choose from {list(ALL_TASK_NAMES)}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    weights = {**TV_WEIGHTS, **(tv_weights or {})}
    kw = {"device": torch.device(device), "dtype": dtype, "tv_weights": weights}
    builders = {
        "CT 8 views": lambda: ct_task(8, size, **kw),
        "CT 16 views": lambda: ct_task(16, size, **kw),
        "MRI 4x": lambda: mri_task(4, size, seed, **kw),
        "MRI 8x": lambda: mri_task(8, size, seed, **kw),
        "Inpainting 50%": lambda: inpainting_task(size, seed, **kw),
        "Gaussian deblur": lambda: deblur_task(size, **kw),
        "SR 4x": lambda: super_resolution_task(size, **kw),
    }
    return [builders[n]() for n in names]
