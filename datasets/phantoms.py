"""Seeded phantoms: Shepp-Logan, random 2D ellipses and random 3D ellipsoids."""

from __future__ import annotations

import math

import numpy as np
import torch

from invsolve._validation import require_generator


def shepp_logan(size: int = 256, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The modified Shepp-Logan phantom (scikit-image), resized to ``size x size``, shape ``(1, size, size)`` in [0, 1]."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    image = shepp_logan_phantom()
    if image.shape != (size, size):
        image = resize(image, (size, size), order=1, anti_aliasing=True, mode="constant")
    image = np.clip(image, 0.0, None)
    image = image / image.max()
    return torch.from_numpy(image.astype(np.float64)).to(dtype)[None]


def random_ellipses(
    size: int,
    generator: torch.Generator,
    *,
    n_ellipses: tuple[int, int] = (4, 10),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random phantom of overlapping ellipses inside a body ellipse, shape ``(1, size, size)`` in [0, 1].

    Everything is drawn from ``generator``: same generator state, same phantom.
    """
    require_generator(generator)  # phantoms are always seeded

    def u(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))

    coords = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.zeros(size, size, dtype=torch.float64)

    def add(cx, cy, a, b, theta, value):
        c, s = math.cos(theta), math.sin(theta)
        xr = (xx - cx) * c + (yy - cy) * s
        yr = -(xx - cx) * s + (yy - cy) * c
        image[(xr / a) ** 2 + (yr / b) ** 2 <= 1] += value

    add(0.0, 0.0, u(0.7, 0.9), u(0.8, 0.95), u(-0.3, 0.3), 0.5)
    count = int(torch.randint(n_ellipses[0], n_ellipses[1] + 1, (), generator=generator))
    for _ in range(count):
        add(u(-0.45, 0.45), u(-0.5, 0.5), u(0.05, 0.35), u(0.05, 0.35), u(0, math.pi), u(-0.3, 0.4))
    image = image.clamp(0.0, 1.0)
    return image.to(dtype)[None]
