"""Seeded random 3D ellipsoid phantoms and their 2D slices.

The 3D analogue of :func:`invsolve.datasets.phantoms.random_ellipses`: a body ellipsoid of
intensity 0.5 holding a random number of smaller, randomly rotated ellipsoids whose intensities
add (Shepp & Logan, 1974, built the same way from ellipses), clamped to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from invsolve._validation import require_generator

Shape3D = int | Sequence[int]


def _shape3d(size: Shape3D) -> tuple[int, int, int]:
    dims = (size, size, size) if isinstance(size, int) else tuple(size)
    if len(dims) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 4 for d in dims):
        raise ValueError(f"size must be an integer >= 4 or three such integers (D, H, W), got {size!r}")
    return dims  # type: ignore[return-value]


def _rotation(alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """Rotation matrix ``Rz(alpha) Ry(beta) Rz(gamma)`` (z-y-z Euler angles), float64."""

    def rz(a: float) -> torch.Tensor:
        c, s = math.cos(a), math.sin(a)
        return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)

    c, s = math.cos(beta), math.sin(beta)
    ry = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
    return rz(alpha) @ ry @ rz(gamma)


def random_ellipsoids(
    size: Shape3D,
    generator: torch.Generator,
    *,
    n_ellipsoids: tuple[int, int] = (4, 10),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random volume of overlapping ellipsoids inside a body ellipsoid, shape ``(1, D, H, W)`` in [0, 1].

    Coordinates span ``[-1, 1]`` along each axis (z, y, x). Every random number is drawn from
    ``generator``: the same generator state gives the same phantom.

    Args:
        size: ``D = H = W`` or a tuple ``(D, H, W)``, each at least 4.
        generator: the source of randomness (required).
        n_ellipsoids: inclusive range of the number of inner ellipsoids.
        dtype: output dtype.
    """
    require_generator(generator)  # phantoms are always seeded
    lo, hi = n_ellipsoids
    if not 0 <= lo <= hi:
        raise ValueError(f"n_ellipsoids must be (low, high) with 0 <= low <= high, got {n_ellipsoids!r}")
    d, h, w = _shape3d(size)

    def u(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))

    axes = [torch.linspace(-1, 1, n, dtype=torch.float64) for n in (d, h, w)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    points = torch.stack([xx, yy, zz], dim=-1)  # (D, H, W, 3) in (x, y, z) order
    volume = torch.zeros(d, h, w, dtype=torch.float64)

    def add(center: Sequence[float], semi_axes: Sequence[float], angles: Sequence[float], value: float) -> None:
        rot = _rotation(*angles)
        local = (points - torch.tensor(center, dtype=torch.float64)) @ rot  # coordinates in the ellipsoid frame
        inside = (local / torch.tensor(semi_axes, dtype=torch.float64)).square().sum(-1) <= 1
        volume[inside] += value

    add((0.0, 0.0, 0.0), (u(0.7, 0.9), u(0.8, 0.95), u(0.75, 0.95)), (u(-0.3, 0.3), 0.0, 0.0), 0.5)
    count = int(torch.randint(lo, hi + 1, (), generator=generator))
    for _ in range(count):
        center = (u(-0.45, 0.45), u(-0.5, 0.5), u(-0.5, 0.5))
        semi = (u(0.05, 0.35), u(0.05, 0.35), u(0.05, 0.35))
        angles = (u(0, 2 * math.pi), u(0, math.pi), u(0, 2 * math.pi))
        add(center, semi, angles, u(-0.3, 0.4))
    return volume.clamp(0.0, 1.0).to(dtype)[None]


def volume_slice(volume: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    """Slice ``index`` of a ``(C, D, H, W)`` volume along spatial ``axis`` (0 = D, 1 = H, 2 = W), a ``(C, ., .)`` image."""
    if volume.dim() != 4:
        raise ValueError(f"volume must have shape (C, D, H, W), got {tuple(volume.shape)}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    n = volume.shape[axis + 1]
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for axis {axis} of length {n}")
    return volume.select(axis + 1, index)
