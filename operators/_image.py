"""Shared pieces of the image-domain operators (inpainting, super-resolution, blur).

Images are ``(B, C, H, W)`` real tensors; ``img_shape`` arguments are ``(C, H, W)``
(or ``(H, W)``, meaning one channel).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import torch

from invsolve._validation import FLOAT_DTYPES, float_dtype, positive_int, require_generator  # noqa: F401
from invsolve.operators.base import DeepinvLinearOperator

ImageShape = tuple[int, int, int]

def image_shape(value: object, name: str = "img_shape") -> ImageShape:
    """Normalise ``(C, H, W)`` or ``(H, W)`` to a ``(C, H, W)`` tuple of positive ints."""
    if isinstance(value, torch.Size):
        value = tuple(value)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) not in (2, 3):
        raise ValueError(f"{name} must be (C, H, W) or (H, W), got {value!r}")
    dims = []
    for d in value:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"{name} must hold positive integers, got {tuple(value)!r}")
        dims.append(int(d))
    if len(dims) == 2:
        dims.insert(0, 1)
    return tuple(dims)  # type: ignore[return-value]


def prepare_kernel(
    kernel: object,
    img_shape: ImageShape,
    *,
    dtype: torch.dtype | None,
    device: torch.device | str | None,
    name: str = "kernel",
) -> torch.Tensor:
    """Check a convolution kernel and return it as ``(1, c, h, w)`` with ``c`` in ``{1, C}``.

    ``kernel`` is ``(h, w)`` or ``(1, 1 or C, h, w)``, finite, no larger than the
    image, with a positive sum (per channel). ``dtype=None`` keeps a floating
    kernel's dtype (float32 otherwise).
    """
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(kernel).__name__}")
    C, H, W = img_shape
    if kernel.dim() == 2:
        kernel = kernel[None, None]
    elif kernel.dim() != 4 or kernel.shape[0] != 1 or kernel.shape[1] not in (1, C):
        raise ValueError(
            f"{name} must be 2-D (h, w) or 4-D (1, 1, h, w) / (1, {C}, h, w), got shape {tuple(kernel.shape)}"
        )
    if kernel.is_complex():
        raise TypeError(f"{name} must be real, got {kernel.dtype}")
    if dtype is None:
        dtype = kernel.dtype if kernel.dtype in FLOAT_DTYPES else torch.float32
    kernel = kernel.to(dtype=float_dtype(dtype), device=device)
    if not bool(torch.isfinite(kernel).all()):
        raise ValueError(f"{name} contains NaN/Inf values; all entries must be finite")
    h, w = kernel.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(kernel.shape)}")
    if h > H or w > W:
        raise ValueError(f"{name} of size ({h}, {w}) is larger than the image ({H}, {W})")
    sums = kernel.sum(dim=(-2, -1))
    if not bool((sums > 0).all()):
        raise ValueError(
            f"{name} must have a positive sum (a blur kernel), got sum(s) {sums.flatten().tolist()}"
        )
    return kernel.contiguous()


class ImageOperator(DeepinvLinearOperator):
    """A deepinv-backed image operator that survives ``.to(dtype)``.

    ``nn.Module.to(torch.float64)`` casts *complex* buffers to real (dropping the
    imaginary part, with a warning), which corrupts deepinv's FFT buffers.
    Subclasses rebuild those buffers in :meth:`_refresh_buffers` after every
    conversion, and call :meth:`_set_dtype` at the end of ``__init__``: deepinv
    physics hold a float32 ``_device_holder`` buffer whatever their filter's
    dtype, which must follow the operator's dtype.
    """

    def _set_dtype(self, dtype: torch.dtype) -> None:
        self.to(dtype=dtype)

    def _apply(self, fn, recurse=True):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Casting complex values to real")
            out = super()._apply(fn, recurse)
        self._refresh_buffers()
        return out

    def _refresh_buffers(self) -> None:
        """Recompute derived (e.g. complex FFT) buffers from the real ones; no-op by default."""
