"""Convolution blur, by FFT (:class:`deepinv.physics.BlurFFT`) or in space (:class:`deepinv.physics.Blur`).

Both compute a true convolution (not a correlation) with the kernel centred
at ``(h // 2, w // 2)`` for odd sizes (deepinv's convention), so FFT and spatial
blur with circular padding agree to round-off everywhere and, with any padding,
away from a ``kernel_size // 2`` band at the border.

Shapes: ``x`` is ``(B, C, H, W)``; ``y`` has the same shape, except with
``padding='valid'`` (spatial only) where it is ``(B, C, H - h + 1, W - w + 1)``.
Every padding below was checked to give an exact adjoint (to round-off, in float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import deepinv
import torch
from deepinv.physics import functional as dF
from deepinv.physics.generator import MotionBlurGenerator

from invsolve.operators._image import (
    ImageOperator,
    float_dtype,
    image_shape,
    positive_int,
    prepare_kernel,
    require_generator,
)

METHODS = ("fft", "spatial")
SPATIAL_PADDINGS = ("circular", "reflect", "replicate", "constant", "valid")


def _pair(value: object, name: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair (height, width), got {value!r}")
        return tuple(value)
    return (value, value)


def _gaussian_sigmas(sigma: object) -> tuple[float, ...]:
    sigmas = _pair(sigma, "sigma")
    for s in sigmas:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s < float("inf"):
            raise ValueError(f"sigma must be a finite positive number (or a pair of them), got {sigma!r}")
    return tuple(float(s) for s in sigmas)


def gaussian_kernel_side(sigmas: Sequence[float]) -> int:
    """The default side of a Gaussian kernel, ``2 int(max(sigma) / 0.3 + 1) + 1`` (deepinv's ``gaussian_blur`` rule)."""
    return 2 * int(max(sigmas) / 0.3 + 1) + 1


def gaussian_kernel(
    sigma: float | Sequence[float],
    size: int | Sequence[int] | None = None,
    *,
    angle: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A 2-D Gaussian kernel ``(h, w)`` that sums to 1 (deepinv's ``gaussian_blur``).

    :param sigma: standard deviation in pixels, or ``(sigma_h, sigma_w)``.
    :param size: kernel size (int or ``(h, w)``); default ``2 * int(max(sigma) / 0.3 + 1) + 1``.
    :param angle: rotation in degrees.
    """
    sigmas = _gaussian_sigmas(sigma)
    if size is not None:
        size = tuple(positive_int(s, "size") for s in _pair(size, "size"))
    else:
        size = (gaussian_kernel_side(sigmas),) * 2
    kernel = dF.gaussian_blur(
        psf_size=size, sigma=tuple(float(s) for s in sigmas), angle=float(angle), dtype=float_dtype(dtype)
    )[0, 0]
    kernel = kernel / kernel.sum()
    return kernel.to(device)


def motion_kernel(
    size: int | Sequence[int],
    generator: torch.Generator,
    *,
    length: float = 0.3,
    sigma: float = 0.25,
    n_steps: int = 1000,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A random motion-blur kernel ``(h, w)`` that sums to 1 (deepinv's ``MotionBlurGenerator``).

    The camera trajectory is a Gaussian process (Matern kernel, length scale
    ``length``, standard deviation ``sigma``, ``n_steps`` points) histogrammed on
    the kernel grid. Only ``generator`` is used (same seed, same kernel); the
    kernel is drawn on the generator's device and moved to ``device``.
    """
    require_generator(generator)
    psf_size = tuple(positive_int(s, "size") for s in _pair(size, "size"))
    for name, value in (("length", length), ("sigma", sigma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    n_steps = positive_int(n_steps, "n_steps", minimum=2)
    gen = MotionBlurGenerator(
        psf_size,
        rng=generator,
        device=generator.device,
        dtype=float_dtype(dtype),
        l=float(length),
        sigma=float(sigma),
        n_steps=n_steps,
    )
    kernel = gen.step(batch_size=1)["filter"][0, 0]
    total = kernel.sum()
    if not total > 0:
        raise ValueError("motion_kernel: the sampled trajectory left the kernel grid; try a larger size")
    kernel = kernel / total
    return kernel.to(generator.device if device is None else device)


class Blur(ImageOperator):
    """Convolution with a fixed kernel, ``(B, C, H, W) -> (B, C, H, W)``.

    :param img_shape: ``(C, H, W)`` (or ``(H, W)``).
    :param kernel: ``(h, w)`` (shared by all channels) or ``(1, 1 or C, h, w)``;
        finite, no larger than the image, positive sum. Used as given (not renormalised).
    :param method: ``'fft'`` (circular convolution by FFT, the default) or ``'spatial'``
        (direct convolution).
    :param padding: boundary handling. ``'fft'``: ``'circular'`` only. ``'spatial'``:
        ``'circular'`` (default), ``'reflect'``, ``'replicate'``, ``'constant'`` (zeros)
        or ``'valid'`` (no padding: smaller ``y``).
    :param dtype: default the kernel's floating dtype, else float32.
    :param device: default the kernel's device.
    """

    def __init__(
        self,
        img_shape: Sequence[int],
        kernel: torch.Tensor,
        method: str = "fft",
        padding: str | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        shape = image_shape(img_shape)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if padding is None:
            padding = "circular"
        if padding == "zeros":
            padding = "constant"
        if method == "fft" and padding != "circular":
            raise ValueError(f"method='fft' is circular: padding must be 'circular' or None, got {padding!r}")
        if padding not in SPATIAL_PADDINGS:
            raise ValueError(f"padding must be one of {SPATIAL_PADDINGS}, got {padding!r}")
        kernel = prepare_kernel(kernel, shape, dtype=dtype, device=device)
        device = kernel.device
        C, H, W = shape
        if method == "fft":
            physics = deepinv.physics.BlurFFT(img_size=shape, filter=kernel, device=device)
        else:
            physics = deepinv.physics.Blur(filter=kernel, padding=padding, device=device)
        h, w = kernel.shape[-2:]
        y_shape = (C, H - h + 1, W - w + 1) if padding == "valid" else shape
        super().__init__(physics, shape, y_shape)
        self.method = method
        self.padding = padding
        self._set_dtype(kernel.dtype)

    @property
    def kernel(self) -> torch.Tensor:
        """The kernel as ``(1, c, h, w)`` (for ``'fft'``, ``c`` = number of channels)."""
        return self.physics.filter

    @classmethod
    def gaussian(
        cls,
        img_shape: Sequence[int],
        sigma: float | Sequence[float],
        method: str = "fft",
        padding: str | None = None,
        *,
        size: int | Sequence[int] | None = None,
        angle: float = 0.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Blur:
        """Blur with :func:`gaussian_kernel` ``(sigma, size, angle)``."""
        if size is None:  # the default kernel size, checked against the image before the kernel is made
            _, h, w = image_shape(img_shape)
            side = gaussian_kernel_side(_gaussian_sigmas(sigma))
            if side > max(h, w):
                raise ValueError(f"a Gaussian kernel of sigma {sigma!r} spans {side} pixels, larger than the "
                                 f"image ({h}, {w}); lower sigma or give a smaller size")
        kernel = gaussian_kernel(sigma, size, angle=angle, dtype=dtype, device=device)
        return cls(img_shape, kernel, method, padding, dtype=dtype, device=device)

    @classmethod
    def motion(
        cls,
        img_shape: Sequence[int],
        size: int | Sequence[int],
        generator: torch.Generator,
        method: str = "fft",
        padding: str | None = None,
        *,
        length: float = 0.3,
        sigma: float = 0.25,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Blur:
        """Blur with a random :func:`motion_kernel` drawn from ``generator``."""
        kernel = motion_kernel(size, generator, length=length, sigma=sigma, dtype=dtype, device=device)
        return cls(img_shape, kernel, method, padding, dtype=dtype, device=kernel.device)

    def _refresh_buffers(self) -> None:
        physics = self.physics
        if self.method != "fft" or physics.filter is None:
            return
        params = deepinv.physics.BlurFFT.get_filter_parameters(
            img_size=self.x_shape, filter=physics.filter, device=physics.filter.device
        )
        physics.angle = params["angle"]
        physics.mask = params["mask"]

    def pseudo_inverse(self, y: torch.Tensor, *, damping: float = 0.0, **kwargs: object) -> torch.Tensor:
        """``argmin ||k * x - y||^2 + damping ||x||^2``; closed form in Fourier for ``method='fft'``.

        Frequencies whose transfer-function modulus is below ``eps * max`` are
        dropped (minimum-norm solution when ``damping=0``). Spatial blur uses
        conjugate gradients (see :meth:`LinearOperator.pseudo_inverse`).
        """
        if self.method != "fft":
            return super().pseudo_inverse(y, damping=damping, **kwargs)
        physics = self.physics
        s = physics.mask
        cutoff = torch.finfo(s.dtype).eps * max(self.x_shape[-2:]) * s.max()
        inv = torch.where(s > cutoff, s / (s.square() + damping), torch.zeros_like(s))
        return physics.V(physics.U_adjoint(self.check_y(y)) * inv)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, method={self.method!r}, padding={self.padding!r}"
