"""Cartesian k-space undersampling masks and synthetic coil sensitivities for MRI.

Every generator returns a 0/1 tensor in *centred* k-space order, the order used by
:class:`invsolve.operators.SingleCoilMRI` / :class:`~invsolve.operators.MultiCoilMRI`
(deepinv's centred FFT): the zero frequency of an axis of length ``n`` sits at
index ``n // 2``. Every random mask takes an explicit ``seed`` (an ``int`` or a
``torch.Generator``) and never touches a global random state, so the same seed
gives the same mask.

Achieved acceleration (``H * W / number of sampled points``, see
:func:`mask_acceleration`):

* :func:`fastmri_mask` ``kind="equispaced"``: fastMRI's ``EquispacedMaskFractionFunc``;
  the achieved acceleration is within a column or two of the target (rounding of the
  fractional spacing), e.g. exactly 4.0 for 64 columns at 4x with centre 8%.
* :func:`fastmri_mask` ``kind="random"``: fastMRI's ``RandomMaskFunc``; the *expected*
  number of columns is ``W / acceleration``, the achieved count is random (binomial).
* :func:`variable_density_mask` and :func:`variable_density_mask_2d`: exactly
  ``round(N / acceleration)`` samples (``N`` columns or points), so the achieved
  acceleration is the target up to rounding.
* :func:`poisson_disc_mask`: the disc radius is tuned by bisection; the achieved
  acceleration is typically within a few percent of the target (exact counts are not
  possible for a minimum-distance pattern).

References: Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated
MRI", arXiv:1811.08839 (2018); Knoll et al., "fastMRI: A Publicly Available Raw
k-Space and DICOM Dataset of Knee Images for Accelerated MR Image Reconstruction
Using Machine Learning", Radiology: AI 2(1) (2020); Lustig, Donoho & Pauly, "Sparse
MRI", MRM 58 (2007) for variable-density and Poisson-disc sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from invsolve._validation import require_tensor
from invsolve.operators.fourier import fft2c

Seed = int | torch.Generator

__all__ = [
    "fastmri_mask",
    "mask_acceleration",
    "poisson_disc_mask",
    "synthetic_coil_maps",
    "variable_density_mask",
    "variable_density_mask_2d",
]


# -- argument checks -----------------------------------------------------------------
def _check_shape(shape: Sequence[int], rank: int = 2, name: str = "shape") -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != rank
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        dims = ", ".join("HW"[i] if rank == 2 else "DHW"[i] for i in range(rank))
        raise ValueError(f"{name} must be a tuple of {rank} positive ints ({dims}), got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_acceleration(acceleration: object) -> float:
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)):
        raise TypeError(f"acceleration must be a number, got {type(acceleration).__name__}")
    if not math.isfinite(acceleration) or acceleration < 1:
        raise ValueError(f"acceleration must be a finite number >= 1, got {acceleration}")
    return float(acceleration)


def _check_fraction(center_fraction: object) -> float:
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float)):
        raise TypeError(f"center_fraction must be a number, got {type(center_fraction).__name__}")
    if not 0 <= center_fraction <= 1:
        raise ValueError(f"center_fraction must lie in [0, 1], got {center_fraction}")
    return float(center_fraction)


def _check_power(power: object) -> float:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power) or power < 0:
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    return float(power)


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"seed must be a CPU torch.Generator (masks are drawn on the CPU), got {seed.device}")
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(int(seed))


def _int_seed(seed: Seed) -> int:
    """An integer seed for numpy (fastMRI): the int itself, or one draw from the generator."""
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**31 - 1, (1,), generator=_generator(seed)))
    _generator(seed)  # type check
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32) for fastMRI's numpy generator, got {seed}")
    return int(seed)


def _finish(mask: torch.Tensor, dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype (e.g. torch.float32), got {dtype}")
    return mask.to(dtype=dtype, device=device)


def _centre_slice(n: int, n_low: int) -> slice:
    """fastMRI's convention for the ``n_low`` central lines of ``n`` (covers index ``n // 2``)."""
    pad = (n - n_low + 1) // 2
    return slice(pad, pad + n_low)


def mask_acceleration(mask: torch.Tensor) -> float:
    """Achieved acceleration ``mask.numel() / mask.sum()`` of a 0/1 mask (``inf`` if empty)."""
    require_tensor("mask", mask)
    sampled = float(mask.sum())
    return math.inf if sampled == 0 else mask.numel() / sampled


# -- 1D (column) masks ---------------------------------------------------------------------
def fastmri_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    kind: str = "equispaced",
    seed: Seed = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A fastMRI column mask of shape ``(H, W)``: phase-encode columns (last axis) broadcast over rows.

    Built on ``fastmri.data.subsample`` (Zbontar et al. 2018; Knoll et al. 2020):
    ``kind="equispaced"`` uses ``EquispacedMaskFractionFunc`` (the masks of the
    public multi-coil data: ``round(W * center_fraction)`` central columns plus
    equally spaced columns whose spacing is adjusted so that the total matches
    ``W / acceleration``, with a seeded random offset); ``kind="random"`` uses
    ``RandomMaskFunc`` (central columns plus columns drawn independently with the
    probability that makes the *expected* total ``W / acceleration``).

    ``center_fraction`` must leave room for the outer columns:
    ``round(W * center_fraction) < W / acceleration`` (``<=`` for ``"random"``).
    """
    h, w = _check_shape(shape)
    acceleration = _check_acceleration(acceleration)
    center_fraction = _check_fraction(center_fraction)
    n_low = round(w * center_fraction)
    if kind not in ("equispaced", "random"):
        raise ValueError(f"kind must be 'equispaced' or 'random', got {kind!r}")
    int_seed = _int_seed(seed)
    if acceleration == 1:
        return _finish(torch.ones(h, w), dtype, device)
    if kind == "equispaced":
        from fastmri.data.subsample import EquispacedMaskFractionFunc as MaskFunc

        ok = n_low < w / acceleration
    else:
        from fastmri.data.subsample import RandomMaskFunc as MaskFunc

        ok = n_low <= w / acceleration
    if not ok:
        raise ValueError(
            f"center_fraction={center_fraction} keeps {n_low} central columns of {w}, which leaves no room "
            f"for acceleration={acceleration} ({w / acceleration:.1f} columns in total); lower one of them"
        )
    func = MaskFunc(center_fractions=[center_fraction], accelerations=[acceleration], seed=int_seed)
    columns, _ = func((h, w, 2), seed=int_seed)  # fastMRI layout (rows, cols, complex) -> (1, W, 1)
    columns = columns.reshape(w)
    return _finish(columns.expand(h, w).clone(), dtype, device)


def _exact_draw(weights: torch.Tensor, fixed: torch.Tensor, n_total: int, generator: torch.Generator) -> torch.Tensor:
    """Keep ``fixed`` and draw ``n_total - fixed.sum()`` more entries without replacement, prob. ∝ ``weights``."""
    mask = fixed.clone().reshape(-1)
    n_extra = n_total - int(mask.sum())
    if n_extra > 0:
        w = weights.reshape(-1).double().clone()
        w[mask.bool()] = 0
        picks = torch.multinomial(w, n_extra, replacement=False, generator=generator)
        mask[picks] = 1
    return mask.reshape(fixed.shape)


def _polynomial_density(distance: torch.Tensor, power: float) -> torch.Tensor:
    """``(1 - d / d_max)^power`` with ``d_max`` just beyond the largest distance (all weights > 0)."""
    d_max = float(distance.max()) * (1 + 1e-3) + 1e-12
    return (1 - distance / d_max).clamp_min(0) ** power + 1e-12


def _budget(n: int, acceleration: float, n_low: int, name: str = "center_fraction") -> int:
    n_total = max(1, round(n / acceleration))
    if n_low > n_total:
        raise ValueError(
            f"{name} keeps {n_low} fully sampled points but acceleration={acceleration} allows only "
            f"{n_total} of {n}; lower center_fraction or acceleration"
        )
    return n_total


def variable_density_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = 0,
    *,
    power: float = 2.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random columns with a polynomial variable density, as an ``(H, W)`` mask broadcast over rows.

    The ``round(W * center_fraction)`` central columns are always sampled (fastMRI's
    centre convention); the other columns are drawn without replacement with
    probability proportional to ``(1 - |k| / k_max)^power``, ``|k|`` the distance of
    the column from the k-space centre (Lustig et al. 2007). The total is exactly
    ``round(W / acceleration)`` columns.
    """
    h, w = _check_shape(shape)
    acceleration = _check_acceleration(acceleration)
    n_low = round(w * _check_fraction(center_fraction))
    power = _check_power(power)
    n_total = _budget(w, acceleration, n_low)
    generator = _generator(seed)
    fixed = torch.zeros(w)
    fixed[_centre_slice(w, n_low)] = 1
    distance = (torch.arange(w, dtype=torch.float64) - w // 2).abs()
    columns = _exact_draw(_polynomial_density(distance, power), fixed, n_total, generator)
    return _finish(columns.expand(h, w).clone(), dtype, device)


def kspace_variance_mask(
    images: torch.Tensor,
    acceleration: float,
    center_fraction: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A fixed column mask learned from training images: the centre plus the columns of largest k-space variance.

    ``images`` ``(N, H, W)`` (real or complex) are transformed with the centred orthonormal FFT; the
    variance over the ``N`` images of each k-space sample is summed over the rows of its column, and
    the ``round(W / acceleration)`` total columns are the ``round(W * center_fraction)`` central
    ones plus the highest-variance others (the data-driven fixed mask of active-sampling comparisons,
    e.g. Nolan et al., TMLR 2025). Deterministic; returned as an ``(H, W)`` mask broadcast over rows.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 3 or images.shape[0] < 2:
        raise ValueError(f"images must be a tensor (N >= 2, H, W), got {getattr(images, 'shape', type(images))}")
    _, h, w = images.shape
    acceleration = _check_acceleration(acceleration)
    n_low = round(w * _check_fraction(center_fraction))
    n_total = _budget(w, acceleration, n_low)
    x = images.to(torch.complex128)
    k = fft2c(x)
    variance = (k - k.mean(0)).abs().square().mean(0).sum(0)  # (W,)
    columns = torch.zeros(w)
    columns[_centre_slice(w, n_low)] = 1
    variance[columns.bool()] = -math.inf
    columns[torch.topk(variance, n_total - n_low).indices] = 1
    return _finish(columns.expand(h, w).clone(), dtype, device)


def _radial_distance(h: int, w: int) -> torch.Tensor:
    """Normalised distance of each k-space point from the centre (1 at the middle of each edge)."""
    ky = (torch.arange(h, dtype=torch.float64) - h // 2) / max(h / 2, 1)
    kx = (torch.arange(w, dtype=torch.float64) - w // 2) / max(w / 2, 1)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _centre_block(h: int, w: int, center_fraction: float) -> torch.Tensor:
    fixed = torch.zeros(h, w)
    fixed[_centre_slice(h, round(h * center_fraction)), _centre_slice(w, round(w * center_fraction))] = 1
    return fixed


def variable_density_mask_2d(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = 0,
    *,
    power: float = 2.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random points of the ``(H, W)`` phase-encode plane with a polynomial variable density.

    For 3D Cartesian MRI (two phase-encode axes, the third axis the fully sampled
    readout): pass this mask with a ``(D, H, W)`` ``img_size`` to the MRI operators
    and it is applied to every ``D`` position. A central block of
    ``round(H * center_fraction) x round(W * center_fraction)`` points is always
    sampled; the rest are drawn without replacement with probability proportional to
    ``(1 - r / r_max)^power``, ``r`` the normalised radial k-space distance. The
    total is exactly ``round(H * W / acceleration)`` points.
    """
    h, w = _check_shape(shape)
    acceleration = _check_acceleration(acceleration)
    center_fraction = _check_fraction(center_fraction)
    power = _check_power(power)
    fixed = _centre_block(h, w, center_fraction)
    n_total = _budget(h * w, acceleration, int(fixed.sum()))
    generator = _generator(seed)
    mask = _exact_draw(_polynomial_density(_radial_distance(h, w), power), fixed, n_total, generator)
    return _finish(mask, dtype, device)


def _dart_throw(order: np.ndarray, radius: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Greedy minimum-distance sampling: visit points in ``order``, keep one unless a kept point blocks it.

    A kept point ``p`` blocks every point closer than ``radius[p]``.
    """
    h, w = fixed.shape
    blocked = np.zeros((h, w), dtype=bool)
    kept = fixed.copy()
    stencils: dict[float, np.ndarray] = {}
    flat_blocked = blocked.reshape(-1)
    for idx in order:
        if flat_blocked[idx]:
            continue
        y, x = divmod(int(idx), w)
        kept[y, x] = True
        r = round(float(radius[y, x]) * 16) / 16
        stencil = stencils.get(r)
        if stencil is None:
            R = math.ceil(r)
            d = np.arange(-R, R + 1)
            stencil = (d[:, None] ** 2 + d[None, :] ** 2) < r * r
            stencils[r] = stencil
        R = stencil.shape[0] // 2
        y0, y1, x0, x1 = max(y - R, 0), min(y + R + 1, h), max(x - R, 0), min(x + R + 1, w)
        blocked[y0:y1, x0:x1] |= stencil[y0 - y + R : y1 - y + R, x0 - x + R : x1 - x + R]
    return kept


def poisson_disc_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = 0,
    *,
    density_slope: float = 2.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A variable-density Poisson-disc mask of the ``(H, W)`` phase-encode plane (for 3D MRI).

    Points are visited in a seeded random order and kept unless a previously kept
    point lies closer than its radius ``r(k) = scale * (1 + density_slope * |k|)``
    (``|k|`` the normalised radial k-space distance), so samples are spread evenly
    with a density that falls off away from the centre (Lustig et al. 2007). The
    ``scale`` is found by bisection so that, together with the fully sampled
    central block (as in :func:`variable_density_mask_2d`), the count is as close
    as possible to ``H * W / acceleration``; the achieved acceleration is typically
    within a few percent of the target (check it with :func:`mask_acceleration`).
    """
    h, w = _check_shape(shape)
    acceleration = _check_acceleration(acceleration)
    center_fraction = _check_fraction(center_fraction)
    if isinstance(density_slope, bool) or not isinstance(density_slope, (int, float)) or not density_slope >= 0:
        raise ValueError(f"density_slope must be a finite number >= 0, got {density_slope!r}")
    fixed = _centre_block(h, w, center_fraction).numpy().astype(bool)
    n_target = _budget(h * w, acceleration, int(fixed.sum()))
    generator = _generator(seed)
    order = torch.randperm(h * w, generator=generator).numpy()
    profile = (1 + density_slope * _radial_distance(h, w)).numpy()

    def count(scale: float) -> tuple[int, np.ndarray]:
        kept = _dart_throw(order, scale * profile, fixed)
        return int(kept.sum()), kept

    # A radius below 1 blocks nothing (every point kept); the count falls as the radius grows.
    lo, hi = 0.0, math.sqrt(h * w) / 2 + 1
    best_n, best = count(hi)
    best_err = abs(best_n - n_target)
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        n, kept = count(mid)
        if abs(n - n_target) < best_err:
            best_err, best = abs(n - n_target), kept
        if n == n_target or hi - lo < 1e-3:
            break
        if n > n_target:
            lo = mid
        else:
            hi = mid
    return _finish(torch.from_numpy(best.astype(np.float32)), dtype, device)


# -- coil sensitivities -----------------------------------------------------------------
def synthetic_coil_maps(
    n_coils: int,
    shape: Sequence[int],
    dtype: torch.dtype = torch.complex64,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Smooth, deterministic complex coil sensitivities of shape ``(n_coils, *shape)``.

    ``shape`` is ``(H, W)`` or ``(D, H, W)``. Coil ``c`` sits on a circle around the
    field of view at angle ``2 pi c / n_coils``; its magnitude is a Gaussian bump of
    the distance to the coil and its phase is a linear ramp along the coil's
    direction plus a constant offset. In 3D, even and odd coils are shifted up and
    down in depth (a Gaussian profile along ``D``). The maps are normalised so that
    ``sum_c |S_c|^2 = 1`` at every voxel, i.e. ``S^H S = I`` (full sampling is then
    an isometry and the coil-combined zero-filled image is ``A^H y``).

    ``dtype`` is the complex output dtype; ``torch.float32`` / ``torch.float64`` are
    accepted and mean ``complex64`` / ``complex128``.
    """
    if isinstance(n_coils, bool) or not isinstance(n_coils, (int, np.integer)) or n_coils < 1:
        raise ValueError(f"n_coils must be a positive int, got {n_coils!r}")
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3):
        raise ValueError(f"shape must be (H, W) or (D, H, W), got {shape!r}")
    shape = _check_shape(shape, rank=len(shape))
    complex_dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)
    if complex_dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"dtype must be complex64/complex128 (or float32/float64), got {dtype}")
    h, w = shape[-2:]
    y = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    angles = 2 * math.pi * torch.arange(n_coils, dtype=torch.float64) / n_coils
    cy, cx = 1.5 * torch.sin(angles), 1.5 * torch.cos(angles)
    dist2 = (y[None] - cy[:, None, None]) ** 2 + (x[None] - cx[:, None, None]) ** 2
    magnitude = torch.exp(-dist2 / (2 * 1.2**2))
    sin, cos = torch.sin(angles)[:, None, None], torch.cos(angles)[:, None, None]
    phase = 0.5 * math.pi * (sin * y + cos * x) + angles[:, None, None]  # linear ramp + offset
    maps = torch.polar(magnitude, phase)  # (C, H, W)
    if len(shape) == 3:
        z = torch.linspace(-1, 1, shape[0], dtype=torch.float64)
        cz = torch.full((n_coils,), 0.5, dtype=torch.float64)
        cz[1::2] = -0.5  # alternate coils sit above and below the central slice
        if n_coils == 1:
            cz.zero_()
        profile = torch.exp(-((z[None] - cz[:, None]) ** 2) / (2 * 1.0**2))  # (C, D)
        maps = maps[:, None] * profile[:, :, None, None]
    maps = maps / maps.abs().square().sum(dim=0, keepdim=True).sqrt()
    return maps.to(dtype=complex_dtype, device=device)
