"""Nonlinear forward operators: Fourier phase retrieval.

:class:`FourierMagnitude` is the phase-retrieval operator of DPS (Chung et al., ICLR 2023,
Section 4, "Fourier phase retrieval") and RED-Diff (Mardani et al., ICLR 2024, Section 5.1):
``y = |F P x|``, with ``P`` zero padding (the oversampling that makes the problem well posed,
Fienup 1982) and ``F`` the orthonormal 2D DFT over the two trailing axes, so that
``||F P x|| = ||x||``. Its vector-Jacobian product comes from autograd (:meth:`Operator.vjp`).

Gradients at zero: ``d|z|/dz`` is undefined at ``z = 0``; autograd uses ``sgn(0) = 0`` (a valid
subgradient), so every VJP is finite. ``squared=True`` measures intensities ``|F P x|^2``, which are
smooth everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from invsolve.operators.base import Operator


class FourierMagnitude(Operator):
    """``(B, C, H, W) -> (B, C, H', W')``: ``|F P x|`` (or ``|F P x|^2``) per channel.

    Args:
        x_shape: ``(C, H, W)`` of the real input images.
        oversampling: ``H' = round(oversampling * H)`` (likewise ``W'``); the image is zero padded
            symmetrically (``(H' - H) // 2`` rows before it) to ``(H', W')`` before the DFT.
            DPS and RED-Diff use 2.0; 1.0 is no padding.
        squared: measure ``|F P x|^2`` instead of ``|F P x|``.
        dtype, device: of the (empty) buffer that carries the operator's dtype, as in
            :class:`~invsolve.operators.algebra.RealToComplex`.
    """

    linear = False

    def __init__(self, x_shape: Sequence[int], *, oversampling: float = 2.0, squared: bool = False,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 3 or any(s < 1 for s in x_shape):
            raise ValueError(f"x_shape must be (C, H, W) with positive sizes, got {x_shape}")
        if not (isinstance(oversampling, (int, float)) and oversampling >= 1):
            raise ValueError(f"oversampling must be a number >= 1, got {oversampling!r}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        c, h, w = x_shape
        ph, pw = max(h, round(oversampling * h)), max(w, round(oversampling * w))
        super().__init__(x_shape, (c, ph, pw))
        top, left = (ph - h) // 2, (pw - w) // 2
        self._pad = (left, pw - w - left, top, ph - h - top)  # F.pad order: last axis first
        self.oversampling = float(oversampling)
        self.squared = bool(squared)
        self.register_buffer("_dtype_anchor", torch.empty(0, dtype=dtype, device=device))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pad):
            x = F.pad(x, self._pad)
        z = torch.fft.fft2(x, norm="ortho")
        if self.squared:
            return z.real.square() + z.imag.square()
        return z.abs()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, oversampling={self.oversampling}, squared={self.squared}"
