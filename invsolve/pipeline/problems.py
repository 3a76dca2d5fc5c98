"""Inverse problems built from data: a truth, its measurement and the classical baseline.

Three routes, one result type (:class:`Problem`):

- **simulated** (:func:`simulated_problem`): an image on the prior grid is measured by the
  setup of a spec (:mod:`invsolve.pipeline.catalogue`) with Gaussian noise ``sigma_y = noise * RMS``;
- **volumes** (:func:`volume_problem`): a stack of slices ``(1, 1, D, n, n)`` measured by the 3D setup of a
  spec (``ct``: parallel beam slice by slice; ``mri``: 3D Cartesian MRI with one ``(n, n)`` column mask for
  every slice, or a ``(k_z, k_y)`` Poisson-disc mask);
- **measured k-space** (:func:`kspace_problem`): a fastMRI slice is undersampled retrospectively
  with the spec's mask. The data are divided by ``scale`` = the maximum of the zero-filled
  magnitude image (computed from the undersampled data alone), so that the image is in the
  prior's range; every output is multiplied back. Coil sensitivities are estimated from the
  fully sampled centre (:func:`invsolve.operators.estimate_coil_maps`; single-coil data get a
  one-"coil" phase map the same way), so a real-valued magnitude prior reconstructs through
  ``MultiCoilMRI(mask, maps) @ RealToComplex``. The noise level is the file's ``noise_std``
  attribute when it has one (files written by :mod:`invsolve.datasets.fastmri_files` record it, as
  a noise pre-scan would); otherwise it is estimated where the object is absent
  (:func:`estimate_kspace_noise`: the background rows of the readout-transformed sampled columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.fft import fftshift, ifftshift

from invsolve.acquisition import ActiveMeasurement, ColumnAcquisition
from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.pipeline.catalogue import (
    KINDS,
    OperatorSpec,
    ProblemSetup,
    SetupCache,
    active_budget,
    log_kspace,
    mri_columns,
    volume_setup,
    with_calibration_columns,
)
from invsolve.pipeline.items import KspaceData


@dataclass
class Problem:
    """Truth ``(1, 1, n, n)`` (or a volume ``(1, 1, D, n, n)``) and its measurement, in normalised units;
    physical = normalised * scale. ``measurement`` is an :class:`~invsolve.acquisition.ActiveMeasurement` when
    the mask is chosen during sampling (``mask=active``)."""

    truth: torch.Tensor
    measurement: Measurement | ActiveMeasurement
    baseline: Callable[[torch.Tensor], torch.Tensor]
    baseline_name: str
    tv_weight: float
    operator_kind: str
    show_measurement: Callable[[torch.Tensor], torch.Tensor]
    scale: float = 1.0
    info: dict[str, float] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return isinstance(self.measurement, ActiveMeasurement)

    @property
    def is_volume(self) -> bool:
        return self.truth.dim() == 5


def measured_problem(setup: ProblemSetup, truth: torch.Tensor, *, noise_seed: int) -> Problem:
    """``truth`` measured by ``setup`` with the noise drawn from ``noise_seed``."""
    generator = torch.Generator(device=truth.device).manual_seed(noise_seed)
    measurement = setup.measure(truth, generator)
    info = {"sigma_y": measurement.noise.sigma}
    if setup.columns is not None and setup.budget is None:  # the actual acceleration beside the nominal one
        info["acceleration"] = float(setup.columns.numel() / setup.columns.sum())
    return Problem(truth, measurement, setup.baseline, setup.baseline_name, setup.tv_weight, setup.kind,
                   setup.show_measurement, info=info)


def simulated_problem(truth: torch.Tensor, spec: OperatorSpec, *, mask_seed: int, noise_seed: int,
                      device: torch.device | str = "cpu", cache: SetupCache | None = None) -> Problem:
    """Measure ``truth (1, 1, n, n)`` with the setup of ``spec`` (masks drawn from ``mask_seed``).

    MRI: every column is simulated (``sigma_y = noise * RMS`` of the fully sampled k-space, so all
    masks see the same noise per sample) and the mask's columns are revealed.
    """
    setup = (cache or SetupCache()).image(spec, truth.shape[-1], mask_seed, device=device)
    return measured_problem(setup, truth.to(device), noise_seed=noise_seed)


def volume_problem(truth: torch.Tensor, spec: OperatorSpec, *, mask_seed: int, noise_seed: int,
                   device: torch.device | str = "cpu") -> Problem:
    """Measure a volume ``truth (1, 1, D, n, n)`` with the 3D setup of ``spec``."""
    if truth.dim() != 5 or truth.shape[:2] != (1, 1) or truth.shape[-1] != truth.shape[-2]:
        raise ValueError(f"truth must be a volume (1, 1, D, n, n), got {tuple(truth.shape)}")
    setup = volume_setup(spec, tuple(truth.shape[2:]), mask_seed, device=device)
    return measured_problem(setup, truth.to(device), noise_seed=noise_seed)


def estimate_kspace_noise(kspace: torch.Tensor, columns: torch.Tensor, *, background_fraction: float = 0.1) -> float:
    """Noise std per real component of complex k-space ``(coils, H, W)``, from where the object is absent.

    The sampled ``columns`` are inverse-Fourier transformed along the fully sampled readout axis ``H``
    (orthonormal, so the noise std is unchanged): in this hybrid space ``(y, k_x)`` a row ``y`` outside the
    object's extent holds noise alone (air above and below the head; readout oversampling doubles it on clinical
    scanners). The ``background_fraction`` of rows with the least energy over all coils and sampled columns are
    taken as background, and the estimate is ``1.4826 * MAD`` of their real and imaginary parts. Measured on
    synthetic multi-coil files with known noise (``tests/test_fastmri_study.py``): 0.88-1.04 of the truth on brain
    and ellipse slices (the former outer-k-space estimate: 5-12x, since sharp edges keep signal there). When the
    object fills every row the estimate is biased upward.
    """
    if not 0 < background_fraction <= 1:
        raise ValueError(f"background_fraction must lie in (0, 1], got {background_fraction!r}")
    sampled = kspace[..., columns.bool()]
    hybrid = fftshift(torch.fft.ifft(ifftshift(sampled, dim=-2), dim=-2, norm="ortho"), dim=-2)
    energy = hybrid.abs().square().sum(dim=tuple(d for d in range(hybrid.dim()) if d != hybrid.dim() - 2))
    rows = energy.argsort()[:max(1, int(round(background_fraction * energy.numel())))]
    values = torch.view_as_real(hybrid[..., rows, :]).flatten().double()
    return float(1.4826 * (values - values.median()).abs().median())


def kspace_problem(data: KspaceData, spec: OperatorSpec, *, mask_seed: int, device: torch.device | str = "cpu",
                   cache: SetupCache | None = None) -> Problem:
    """Retrospectively undersample a fastMRI slice with the mask of an ``mri`` spec (see the module docstring)."""
    from invsolve.operators import MultiCoilMRI, calibration_region, estimate_coil_maps
    from invsolve.operators.coil_sensitivity import MIN_CALIBRATION

    if spec.kind != "mri":
        raise ValueError(f"fastMRI data hold k-space: only the 'mri' operator applies, got {spec.kind!r}")
    coils, h, w = data.kspace.shape
    columns = with_calibration_columns(spec, mri_columns(spec, w, mask_seed, cache), MIN_CALIBRATION)
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
    noise = GaussianNoise(max(sigma, 1e-6), model_is_exact=False)  # estimated coil maps: see Need.EXACT_MODEL
    full = torch.view_as_real(data.kspace).permute(3, 0, 1, 2)[None].contiguous().to(device) / scale
    active = ActiveMeasurement(ColumnAcquisition((h, w), maps, device=device), full, noise, columns,
                               active_budget(spec, w) if spec.is_active else None)
    truth = (data.target / scale)[None, None].to(device)

    def show(y: torch.Tensor) -> torch.Tensor:
        return log_kspace(y[:, :, 0])

    return Problem(truth, active if spec.is_active else active.measurement(columns), zero_filled_rss, "zero-filled",
                   KINDS["mri"].tv_weight(dict(spec.params)), "mri", show, scale,
                   info={"sigma_y": sigma, "sigma_from_file": source, "acceleration": float(mask.numel() / mask.sum()),
                         "center_columns": calibration.stop - calibration.start})


@dataclass
class ProblemCache:
    """What consecutive problems share, kept by the caller: setups (operators, SVDs) and the NIfTI volume."""

    setups: SetupCache = field(default_factory=SetupCache)
    volumes: dict = field(default_factory=dict)


def item_problem(item, spec: OperatorSpec, size: int, *, mask_seed: int, noise_seed: int,
                 device: torch.device | str = "cpu", resize: str = "none", plane: str = "axial",
                 percentiles: tuple[float, float] = (0.5, 99.5),
                 cache: ProblemCache | None = None) -> tuple[Problem, dict]:
    """The problem of one data item (:class:`~invsolve.pipeline.items.ItemRef`) on the ``size x size`` prior grid,
    and the geometry needed to map its reconstruction back (original shape, intensity window)."""
    from invsolve.pipeline.items import load_image, load_kspace

    cache = cache or ProblemCache()
    if item.kind == "fastmri":
        data = load_kspace(item, size, resize)
        problem = kspace_problem(data, spec, mask_seed=mask_seed, device=device, cache=cache.setups)
        return problem, {"original_shape": [size, size], "window": [0.0, 1.0],
                         "challenge": "multicoil" if data.multicoil else "singlecoil"}
    image = load_image(item, size, resize, plane=plane, percentiles=tuple(percentiles), volumes=cache.volumes)
    problem = simulated_problem(image.truth, spec, mask_seed=mask_seed, noise_seed=noise_seed, device=device,
                                cache=cache.setups)
    return problem, {"original_shape": list(image.original_shape), "window": list(image.window)}
