"""Inverse problems built from data: a truth, its measurement and the classical baseline.

Two routes, one result type (:class:`Problem`):

- **simulated** (:func:`simulated_problem`): an image on the prior grid is measured by the
  operator of a spec with Gaussian noise ``sigma_y = noise * RMS(A x)``;
- **measured k-space** (:func:`kspace_problem`): a fastMRI slice is undersampled retrospectively
  with the spec's mask. The data are divided by ``scale`` = the maximum of the zero-filled
  magnitude image (computed from the undersampled data alone), so that the image is in the
  prior's range; every output is multiplied back. Coil sensitivities are estimated from the
  fully sampled centre (:func:`invsolve.operators.estimate_coil_maps`; single-coil data get a
  one-"coil" phase map the same way), so a real-valued magnitude prior reconstructs through
  ``MultiCoilMRI(mask, maps) @ RealToComplex``. The noise level is the file's ``noise_std``
  attribute when it has one (files written by :mod:`invsolve.datasets.fastmri_files` record it, as
  a noise pre-scan would); otherwise it is estimated from the outer k-space rows of the sampled
  columns (median absolute deviation), an upper bound that is far too high for small, sharp-edged
  images (12x on the 64x64 phantoms) but reasonable for readout-oversampled clinical k-space.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.pipeline.items import KspaceData
from invsolve.operators.acquisition import ActiveMeasurement, ColumnAcquisition
from invsolve.pipeline.operator_specs import OperatorSpec, active_budget, image_task, mri_columns
from invsolve.tasks import _magnitude


@dataclass
class Problem:
    """Truth ``(1, 1, n, n)`` and reconstructions live in normalised units; physical = normalised * scale."""

    truth: torch.Tensor
    measurement: Measurement
    baseline: Callable[[torch.Tensor], torch.Tensor]
    baseline_name: str
    tv_weight: float
    operator_kind: str
    show_measurement: Callable[[torch.Tensor], torch.Tensor]
    scale: float = 1.0
    info: dict[str, float] = field(default_factory=dict)
    active: ActiveMeasurement | None = None  # mask=active: the data ADS may acquire, and how many columns
    budget: int = 0


def simulated_problem(truth: torch.Tensor, spec: OperatorSpec, *, mask_seed: int, noise_seed: int,
                      device: torch.device | str = "cpu") -> Problem:
    """Measure ``truth (1, 1, n, n)`` with the operator of ``spec`` (mask drawn from ``mask_seed``).

    MRI: every column is simulated (``sigma_y = noise * RMS`` of the fully sampled k-space, so all
    masks see the same noise per sample) and the mask's columns are revealed.
    """
    size = truth.shape[-1]
    task = _cached_task(spec, size, mask_seed, str(device))
    truth = truth.to(device)
    generator = torch.Generator(device=device).manual_seed(noise_seed)
    if spec.kind == "mri":
        acquisition = _cached_acquisition(spec, size, str(device))
        with torch.no_grad():
            full = acquisition.full.A(truth)
        noise = GaussianNoise(spec["noise"] * float(full.square().mean().sqrt()))
        columns = mri_columns(spec, size, mask_seed)
        active = ActiveMeasurement(acquisition, noise.sample(full, generator), noise, columns)
        is_active = spec["mask"] == "active"
        return Problem(truth, active.measurement(columns), task.baseline, task.baseline_name, task.tv_weight,
                       spec.kind, task.show_measurement, info={"sigma_y": noise.sigma},
                       active=active if is_active else None, budget=active_budget(spec, size) if is_active else 0)
    with torch.no_grad():
        clean = task.operator.A(truth)
    sigma = spec["noise"] * float(clean.square().mean().sqrt())
    noise = GaussianNoise(sigma)
    y = noise.sample(clean, generator)
    return Problem(truth, Measurement(task.operator, noise, y), task.baseline, task.baseline_name, task.tv_weight,
                   spec.kind, task.show_measurement, info={"sigma_y": sigma})


@functools.lru_cache(maxsize=4)
def _cached_acquisition(spec: OperatorSpec, size: int, device: str) -> ColumnAcquisition:
    from invsolve.operators import synthetic_coil_maps

    maps = synthetic_coil_maps(spec["coils"], (size, size)) if spec["coils"] else None
    return ColumnAcquisition((size, size), maps, device=device)


@functools.lru_cache(maxsize=8)
def _cached_task(spec: OperatorSpec, size: int, mask_seed: int, device: str):
    """Slices of a volume share the operator of their spec (and its memoised SVD)."""
    return image_task(spec, size, mask_seed, device=device)



def estimate_kspace_noise(kspace: torch.Tensor, columns: torch.Tensor, *, edge: float = 0.125) -> float:
    """Noise std per real component from the outer ``edge`` fraction of rows of the sampled ``columns``.

    ``kspace`` is complex ``(coils, H, W)``; the estimate is ``1.4826 * median(|v - median(v)|)`` over
    the real and imaginary parts there (far from the centre, where the signal is weakest). It is an
    upper bound when the object has much fine detail.
    """
    h = kspace.shape[-2]
    rows = max(1, int(round(edge * h / 2)))
    outer = torch.cat([kspace[:, :rows], kspace[:, h - rows:]], dim=1)[..., columns.bool()]
    values = torch.view_as_real(outer).flatten().double()
    return float(1.4826 * (values - values.median()).abs().median())


def kspace_problem(data: KspaceData, spec: OperatorSpec, *, mask_seed: int,
                   device: torch.device | str = "cpu") -> Problem:
    """Retrospectively undersample a fastMRI slice with the mask of an ``mri`` spec (see the module docstring)."""
    from invsolve.operators import MultiCoilMRI, calibration_region, estimate_coil_maps

    if spec.kind != "mri":
        raise ValueError(f"fastMRI data hold k-space: only the 'mri' operator applies, got {spec.kind!r}")
    coils, h, w = data.kspace.shape
    columns = mri_columns(spec, w, mask_seed)
    mask = columns.float().expand(h, w).clone()
    undersampled = data.kspace * mask
    try:
        calibration = calibration_region(mask[0])
    except ValueError as err:
        raise ValueError(f"{err}; raise the operator's center_fraction (now {spec['center_fraction']})") from None
    maps = estimate_coil_maps(undersampled, calibration)
    mri = MultiCoilMRI(mask.to(device), maps.to(device), (h, w), device=device)
    y = torch.view_as_real(undersampled).permute(3, 0, 1, 2)[None].contiguous().to(device)  # (1, 2, coils, H, W)

    def zero_filled_rss(y: torch.Tensor) -> torch.Tensor:
        return mri.zero_filled(y, rss=True)

    scale = float(zero_filled_rss(y).max())
    if not scale > 0:
        raise ValueError("the undersampled k-space is all zeros; nothing to reconstruct")
    if data.noise_std is not None:
        sigma, source = data.noise_std / math.sqrt(2) / scale, 1.0  # per real component
    else:
        sigma, source = estimate_kspace_noise(undersampled, mask[0]) / scale, 0.0
    noise = GaussianNoise(max(sigma, 1e-6))
    full = torch.view_as_real(data.kspace).permute(3, 0, 1, 2)[None].contiguous().to(device) / scale
    active = ActiveMeasurement(ColumnAcquisition((h, w), maps, device=device), full, noise, columns)
    measurement = active.measurement(columns)
    truth = (data.target / scale)[None, None].to(device)
    is_active = spec["mask"] == "active"

    def show(y: torch.Tensor) -> torch.Tensor:
        mag = _magnitude(y[:, :, 0])[0, 0]
        return torch.log1p(100 * mag / mag.max().clamp_min(1e-12))

    return Problem(truth, measurement, zero_filled_rss, "zero-filled", 0.01, "mri", show, scale,
                   info={"sigma_y": sigma, "sigma_from_file": source,
                         "acceleration": float(mask.numel() / mask.sum())},
                   active=active if is_active else None, budget=active_budget(spec, w) if is_active else 0)
