"""Pixel inpainting: keep the observed pixels of an image, zero the rest.

``y = m * x`` for a binary mask ``m``, over :class:`deepinv.physics.Inpainting`.
``y`` has the same shape as ``x`` (``(B, C, H, W)``); unobserved entries of ``y``
are exactly zero. The operator is diagonal and idempotent, so ``A_adjoint = A``
and the adjoint is also the (minimum-norm) pseudo-inverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import deepinv
import torch

from invsolve.operators.spectral import CoordinateBasis
from invsolve.operators._image import (
    ImageShape,
    ImageOperator,
    float_dtype,
    image_shape,
    positive_int,
    require_generator,
)


def _prepare_mask(mask: object, img_shape: Sequence[int] | None) -> tuple[torch.Tensor, ImageShape]:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() not in (2, 3):
        raise ValueError(f"mask must have shape (H, W), (1, H, W) or (C, H, W), got {tuple(mask.shape)}")
    if img_shape is None:
        shape = image_shape(tuple(mask.shape), "mask.shape")
    else:
        shape = image_shape(img_shape)
        C, H, W = shape
        ok = tuple(mask.shape) in {(H, W), (1, H, W), (C, H, W)}
        if not ok:
            raise ValueError(
                f"mask must have shape ({H}, {W}), (1, {H}, {W}) or ({C}, {H}, {W}) to match "
                f"img_shape {shape}, got {tuple(mask.shape)}"
            )
    if mask.is_complex():
        raise TypeError(f"mask must be real, got {mask.dtype}")
    if mask.is_floating_point() and not bool(torch.isfinite(mask).all()):
        raise ValueError("mask contains NaN/Inf values; it must be a binary 0/1 tensor")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must be binary: every entry must be 0 or 1 (or False/True)")
    if mask.dim() == 2:
        mask = mask[None]
    return mask, shape


class Inpainting(ImageOperator):
    """Masking operator ``A x = m * x`` on images ``(B, C, H, W) -> (B, C, H, W)``.

    :param mask: binary 0/1 (or bool) tensor, 1 = observed. Shape ``(H, W)`` or
        ``(1, H, W)`` (the same pixels in every channel) or ``(C, H, W)``.
    :param img_shape: ``(C, H, W)`` of the images. Default: ``mask.shape``
        (one channel for a 2-D mask).
    :param dtype: float32 or float64; default the mask's floating dtype, else float32.
    :param device: default the mask's device.

    Build one with :meth:`random` (a random fraction of observed pixels),
    :meth:`box` (a missing rectangle) or directly from a mask.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        img_shape: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        mask, shape = _prepare_mask(mask, img_shape)
        if dtype is None:
            dtype = mask.dtype if mask.dtype in (torch.float32, torch.float64) else torch.float32
        device = mask.device if device is None else torch.device(device)
        mask = mask.to(dtype=float_dtype(dtype), device=device)
        physics = deepinv.physics.Inpainting(img_size=shape, mask=mask, device=device)
        super().__init__(physics, shape, shape)
        self._set_dtype(dtype)

    @property
    def mask(self) -> torch.Tensor:
        """The mask as ``(1, H, W)`` or ``(C, H, W)`` (1 = observed)."""
        return self.physics.mask[0]

    @property
    def fraction_observed(self) -> float:
        """Fraction of observed entries of an image."""
        m = self.mask
        return float(m.sum()) / m.numel()

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed form: ``U = V`` = the identity columns of the observed entries, ``S = 1`` (the matrices of
        :meth:`spectral_bases`; ``O(d k)`` memory, for callers that need them dense)."""
        basis, S = self._observed()
        d, k = basis.shape
        V = torch.zeros(d, k, dtype=S.dtype, device=S.device)
        V[basis.index, torch.arange(k, device=S.device)] = 1
        return V, S, V

    def spectral_bases(self) -> tuple[CoordinateBasis, torch.Tensor, CoordinateBasis]:
        """:meth:`svd` without the matrices: ``U = V`` select the observed entries (``O(d)`` to apply)."""
        basis, S = self._observed()
        return basis, S, basis

    def _observed(self) -> tuple[CoordinateBasis, torch.Tensor]:
        """The observed entries as a coordinate basis, and their singular values (all 1)."""
        full = self.mask.expand(self.x_shape).reshape(-1)
        basis = CoordinateBasis(torch.nonzero(full > 0).squeeze(1), full.numel())
        return basis, torch.ones(basis.shape[1], dtype=full.dtype, device=full.device)

    @classmethod
    def random(
        cls,
        img_shape: Sequence[int],
        fraction_observed: float,
        generator: torch.Generator,
        *,
        pixelwise: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Inpainting:
        """Observe exactly ``round(fraction_observed * n)`` entries (at least one), chosen uniformly.

        ``n`` is ``H * W`` when ``pixelwise`` (all channels of a pixel share its
        fate) and ``C * H * W`` otherwise. The draw uses only ``generator``
        (the same seed gives the same mask); the mask is then moved to ``device``
        (default: the generator's device).
        """
        shape = image_shape(img_shape)
        require_generator(generator)
        if isinstance(fraction_observed, bool) or not isinstance(fraction_observed, (int, float)):
            raise TypeError(f"fraction_observed must be a number, got {type(fraction_observed).__name__}")
        if not 0 < fraction_observed <= 1:
            raise ValueError(f"fraction_observed must be in (0, 1], got {fraction_observed}")
        C, H, W = shape
        mask_shape = (1, H, W) if pixelwise else (C, H, W)
        n = mask_shape[0] * H * W
        k = max(1, round(fraction_observed * n))
        chosen = torch.randperm(n, generator=generator, device=generator.device)[:k]
        mask = torch.zeros(n, dtype=dtype, device=generator.device)
        mask[chosen] = 1
        device = generator.device if device is None else device
        return cls(mask.reshape(mask_shape), shape, dtype=dtype, device=device)

    @classmethod
    def box(
        cls,
        img_shape: Sequence[int],
        top: int,
        left: int,
        height: int,
        width: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Inpainting:
        """Observe everything except the rectangle ``[top:top+height, left:left+width]`` (the hole)."""
        shape = image_shape(img_shape)
        _, H, W = shape
        top = positive_int(top, "top", minimum=0)
        left = positive_int(left, "left", minimum=0)
        height = positive_int(height, "height")
        width = positive_int(width, "width")
        if top + height > H or left + width > W:
            raise ValueError(
                f"box rows [{top}, {top + height}) x cols [{left}, {left + width}) "
                f"does not fit in an image of size ({H}, {W})"
            )
        mask = torch.ones((1, H, W), dtype=dtype, device=device)
        mask[:, top : top + height, left : left + width] = 0
        return cls(mask, shape, dtype=dtype, device=device)

    def pseudo_inverse(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        """Closed form of ``argmin ||m*x - y||^2 + damping ||x||^2``: ``m * y / (1 + damping)``."""
        x = self.A_adjoint(y)
        return x / (1.0 + damping) if damping else x
