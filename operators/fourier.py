"""The one centred, orthonormal 2D DFT of the project (fastMRI's ``fft2c`` / ``ifft2c`` convention).

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes of a complex tensor, zero
frequency at index ``n // 2``; the MRI operators use the same convention through deepinv.
"""

from __future__ import annotations

import torch

_AXES = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes (complex in, complex out)."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_AXES), norm="ortho"), dim=_AXES)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`fft2c`."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_AXES), norm="ortho"), dim=_AXES)
