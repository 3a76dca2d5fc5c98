"""Super-resolution: anti-alias filter then decimate, over :class:`deepinv.physics.Downsampling`.

``y = S (h * x)``: ``x`` is ``(B, C, H, W)``, ``y`` is ``(B, C, H / f, W / f)``.
The convolution uses circular padding by default; deepinv's transposed
convolution handles every padding mode exactly, so ``A_adjoint`` is the exact
adjoint for ``'circular'``, ``'reflect'``, ``'replicate'`` and ``'constant'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import deepinv
import torch
from deepinv.physics import functional as dF

from invsolve.operators._image import ImageOperator, float_dtype, image_shape, positive_int, prepare_kernel

FILTERS = ("bicubic", "bilinear", "gaussian")
PADDINGS = ("circular", "reflect", "replicate", "constant")


def _make_filter(filter: str | torch.Tensor | None, factor: int, img_shape, dtype, device) -> torch.Tensor | None:
    if filter is None:
        return None
    if isinstance(filter, torch.Tensor):
        return prepare_kernel(filter, img_shape, dtype=dtype, device=device, name="filter")
    if filter == "bicubic":
        kernel = dF.bicubic_filter(factor)
    elif filter == "bilinear":
        kernel = dF.bilinear_filter(factor)
    elif filter == "gaussian":
        kernel = dF.gaussian_blur(sigma=(factor, factor), dtype=dtype)
    else:
        raise ValueError(f"filter must be one of {FILTERS}, None or a kernel tensor, got {filter!r}")
    h, w = kernel.shape[-2:]
    if h > img_shape[1] or w > img_shape[2]:
        raise ValueError(
            f"filter={filter!r} at factor {factor} is a ({h}, {w}) kernel, larger than the image "
            f"({img_shape[1]}, {img_shape[2]}); use a larger image or another filter"
        )
    return kernel.to(dtype=dtype, device=device)


class SuperResolution(ImageOperator):
    """Filtered decimation ``(B, C, H, W) -> (B, C, H // factor, W // factor)``.

    :param img_shape: ``(C, H, W)`` (or ``(H, W)``); ``H`` and ``W`` must be divisible by ``factor``.
    :param factor: integer decimation factor (>= 2).
    :param filter: anti-aliasing filter: ``'bicubic'`` (default), ``'bilinear'``,
        ``'gaussian'`` (sigma = factor), ``None`` (plain decimation, no filter) or a
        kernel tensor ``(h, w)``.
    :param padding: boundary handling of the filter; ``'circular'`` (default),
        ``'reflect'``, ``'replicate'`` or ``'constant'`` (zeros).
    """

    def __init__(
        self,
        img_shape: Sequence[int],
        factor: int,
        filter: str | torch.Tensor | None = "bicubic",
        *,
        padding: str = "circular",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = image_shape(img_shape)
        factor = positive_int(factor, "factor", minimum=2)
        C, H, W = shape
        if H % factor or W % factor:
            raise ValueError(
                f"img_shape {shape}: height and width must be divisible by factor={factor} "
                f"(got H % factor = {H % factor}, W % factor = {W % factor})"
            )
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        dtype = float_dtype(dtype)
        kernel = _make_filter(filter, factor, shape, dtype, device)
        physics = deepinv.physics.Downsampling(
            img_size=shape, filter=kernel, factor=factor, device=device, padding=padding
        )
        super().__init__(physics, shape, (C, H // factor, W // factor))
        self.factor = factor
        # Carries dtype/device when there is no filter buffer (filter=None).
        self.register_buffer("_dtype_anchor", torch.zeros(0, dtype=dtype, device=device), persistent=False)
        self._set_dtype(dtype)

    @property
    def filter(self) -> torch.Tensor | None:
        """The anti-aliasing kernel ``(1, 1, h, w)``, or None."""
        return self.physics.filter

    def _refresh_buffers(self) -> None:
        physics = self.physics
        if physics.filter is None:
            return
        params = deepinv.physics.Downsampling.get_filter_parameters(
            img_size=self.x_shape, filter=physics.filter, factor=self.factor, device=physics.filter.device
        )
        for key in ("Fh", "Fhc", "Fh2"):
            setattr(physics, key, params[key])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, padding={self.physics.padding!r}"
