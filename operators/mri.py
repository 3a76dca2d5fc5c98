"""Cartesian MRI forward operators, single- and multi-coil, 2D and 3D, over deepinv's MRI physics.

Shapes (``S`` is the spatial shape: ``(H, W)`` in 2D, ``(D, H, W)`` in 3D; complex
data are two real channels, see :mod:`invsolve.operators.base`):

=================  =====================  ==========================
operator           ``x`` (image)          ``y`` (k-space)
=================  =====================  ==========================
``SingleCoilMRI``  ``(B, 2, *S)``         ``(B, 2, *S)``
``MultiCoilMRI``   ``(B, 2, *S)``         ``(B, 2, coils, *S)``
=================  =====================  ==========================

``y`` lives on the full Cartesian grid with zeros where the mask is 0 (the adjoint
ignores those entries). The mask is a 0/1 tensor of shape ``S``, or ``(H, W)`` in 3D,
in which case it is applied at every depth position (3D Cartesian sampling with the
two phase-encode axes ``(H, W)`` and the depth axis as the fully sampled readout).

Fourier convention (deepinv's ``MRIMixin.fft``): a *centred, orthonormal* DFT over
the spatial axes, ``F x = fftshift(fftn(ifftshift(x), norm="ortho"))``; 3D operators
transform all three axes (a 3D FFT, not slice-by-slice 2D FFTs). The zero frequency
of an axis of length ``n`` is at index ``n // 2``, the convention of the masks in
:mod:`invsolve.operators.masks` and of fastMRI. ``F`` is unitary, so for the
single-coil operator ``A = M F`` the adjoint is also the pseudo-inverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from invsolve._validation import float_dtype, require_finite, require_nonnegative_number, require_tensor
from invsolve.operators.base import DeepinvLinearOperator

__all__ = ["MultiCoilMRI", "SingleCoilMRI"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _check_img_size(img_size: object) -> tuple[int, ...]:
    if isinstance(img_size, torch.Size):
        img_size = tuple(img_size)
    if (
        not isinstance(img_size, (tuple, list))
        or len(img_size) not in (2, 3)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in img_size)
    ):
        raise ValueError(f"img_size must be (H, W) for 2D or (D, H, W) for 3D positive ints, got {img_size!r}")
    return tuple(img_size)


def _check_mask(mask: object, img_size: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Validate a 0/1 sampling mask against the image's spatial shape; return it in ``dtype``."""
    require_tensor("mask", mask)
    allowed = [img_size] + ([img_size[-2:]] if len(img_size) == 3 else [])
    if tuple(mask.shape) not in allowed:
        expected = " or ".join(str(s) for s in allowed)
        raise ValueError(
            f"mask must have shape {expected} to match the image of spatial shape {img_size}, "
            f"got {tuple(mask.shape)}"
        )
    if mask.is_complex():
        raise TypeError(f"mask must be a real 0/1 tensor, got {mask.dtype}")
    if mask.is_floating_point():
        require_finite("mask", mask)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must contain only 0 and 1 values (1 = sampled k-space location)")
    return mask.to(dtype)


def _physics_mask(mask: torch.Tensor, img_size: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """``(*S)`` or, in 3D, ``(H, W)`` -> ``(1, 2, *S)``, the layout deepinv expects (one copy per channel)."""
    return mask.expand(1, 2, *img_size).to(device).clone()


class _CartesianMRI(DeepinvLinearOperator):
    """Shared mask bookkeeping for the Cartesian MRI operators."""

    physics: torch.nn.Module
    img_size: tuple[int, ...]  # spatial shape S
    mask_shape: tuple[int, ...]  # shape of the mask as given

    @property
    def three_d(self) -> bool:
        return len(self.img_size) == 3

    @property
    def mask(self) -> torch.Tensor:
        """The 0/1 sampling mask as given: shape ``S``, or ``(H, W)`` for a 3D operator with one mask for all depths."""
        m = self.physics.mask[0, 0]
        return m[0] if len(self.mask_shape) < len(self.img_size) else m

    @property
    def acceleration(self) -> float:
        """Achieved acceleration: grid size over the number of sampled k-space locations (``inf`` if none)."""
        m = self.mask
        sampled = float(m.sum())
        return float("inf") if sampled == 0 else m.numel() / sampled

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, acceleration={self.acceleration:.3g}"


class SingleCoilMRI(_CartesianMRI):
    """Single-coil Cartesian MRI ``y = M F x`` over :class:`deepinv.physics.MRI`.

    ``x``: ``(B, 2, *S)``, ``y``: ``(B, 2, *S)`` (see the module docstring).

    :param mask: 0/1 tensor (bool, int or float) of shape ``S``, or ``(H, W)`` for a 3D
        operator (applied at every depth). Shape, finiteness and 0/1 values are checked.
    :param img_size: spatial shape ``(H, W)`` or ``(D, H, W)``; defaults to ``mask.shape``
        (so a 3D operator with a single ``(H, W)`` mask needs it).
    :param dtype: ``torch.float32`` or ``torch.float64`` (inputs must match).
    :param device: where the operator's tensors live.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        img_size: Sequence[int] | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        from deepinv.physics import MRI

        dtype = float_dtype(dtype)
        require_tensor("mask", mask)
        img_size = _check_img_size(tuple(mask.shape) if img_size is None else img_size)
        mask = _check_mask(mask, img_size, dtype)
        physics = MRI(mask=_physics_mask(mask, img_size, device), three_d=len(img_size) == 3, device=device)
        super().__init__(physics, (2, *img_size), (2, *img_size))
        self.img_size = img_size
        self.mask_shape = tuple(mask.shape)
        self.to(dtype)  # deepinv physics also hold a float32 ``_device_holder`` buffer

    def pseudo_inverse(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        """Exact (damped) least-squares solution ``A^H y / (1 + damping)``.

        ``A = M F`` with ``F`` unitary and ``M`` a 0/1 diagonal (an orthogonal
        projector), so ``A^+ = F^H M = A^H`` and ``(A^H A + d I)^{-1} A^H = A^H / (1 + d)``;
        the result is the minimum-norm solution (zero on the unsampled frequencies).
        """
        damping = require_nonnegative_number("damping", damping)
        return self.A_adjoint(y) / (1.0 + damping)

    def zero_filled(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-filled reconstruction ``F^H (M y)``, shape ``(B, 2, *S)`` (equal to ``A^H y``)."""
        return self.A_adjoint(y)

    def operator_norm(self, **_: object) -> float:
        """Exactly 1 (0 for an empty mask): ``A`` is a partial isometry."""
        return 1.0 if bool(self.physics.mask.any()) else 0.0


class MultiCoilMRI(_CartesianMRI):
    """Multi-coil (parallel imaging) Cartesian MRI ``y_c = M F (S_c x)`` over :class:`deepinv.physics.MultiCoilMRI`.

    ``x``: ``(B, 2, *S)``, ``y``: ``(B, 2, coils, *S)`` (see the module docstring).

    :param mask: 0/1 tensor of shape ``S``, or ``(H, W)`` for a 3D operator (applied at every depth).
    :param coil_maps: coil sensitivities as a **complex** tensor (``torch.complex64`` /
        ``complex128``) of shape ``(coils, *S)``, e.g. from
        :func:`invsolve.operators.masks.synthetic_coil_maps` (build one from two real
        arrays with ``torch.complex(re, im)``). They are stored in the complex dtype
        matching ``dtype``. They need not be normalised; with ``sum_c |S_c|^2 = 1``
        full sampling is an isometry.
    :param img_size: spatial shape; defaults to ``coil_maps.shape[1:]`` and must agree with it.
    :param dtype: ``torch.float32`` or ``torch.float64`` (inputs must match).
    :param device: where the operator's tensors live.

    The pseudo-inverse is the conjugate-gradient default of
    :class:`~invsolve.operators.base.LinearOperator` (no closed form with
    undersampling: ``A^H A = S^H F^H M F S`` is not diagonal in any fixed basis).
    """

    def __init__(
        self,
        mask: torch.Tensor,
        coil_maps: torch.Tensor,
        img_size: Sequence[int] | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        from deepinv.physics import MultiCoilMRI as DeepinvMultiCoilMRI

        dtype = float_dtype(dtype)
        coil_maps = self._check_coil_maps(coil_maps, img_size)
        img_size = _check_img_size(tuple(coil_maps.shape[1:]) if img_size is None else img_size)
        mask = _check_mask(mask, img_size, dtype)
        coil_maps = coil_maps.to(dtype=_COMPLEX[dtype], device=device)
        physics = DeepinvMultiCoilMRI(
            mask=_physics_mask(mask, img_size, device), coil_maps=coil_maps, three_d=len(img_size) == 3, device=device
        )
        super().__init__(physics, (2, *img_size), (2, coil_maps.shape[0], *img_size))
        self.img_size = img_size
        self.mask_shape = tuple(mask.shape)
        self.n_coils = int(coil_maps.shape[0])
        # nn.Module.to(float dtype) would cast the complex buffer to real (dropping the
        # imaginary part); keep a real view that follows dtype/device, rebuild from it.
        self.register_buffer("_coil_maps_real", torch.view_as_real(coil_maps).clone())
        self._link_coil_maps()
        self.to(dtype)  # deepinv physics also hold a float32 ``_device_holder`` buffer

    @staticmethod
    def _check_coil_maps(coil_maps: object, img_size: Sequence[int] | None) -> torch.Tensor:
        require_tensor("coil_maps", coil_maps)
        if not coil_maps.is_complex():
            raise TypeError(
                f"coil_maps must be a complex tensor (torch.complex64/complex128) of shape (coils, *img_size), "
                f"got {coil_maps.dtype}; build one with torch.complex(real, imag)"
            )
        if img_size is not None:
            img = _check_img_size(img_size)
            if coil_maps.dim() != len(img) + 1 or tuple(coil_maps.shape[1:]) != img or coil_maps.shape[0] < 1:
                raise ValueError(
                    f"coil_maps must have shape (coils, {', '.join(map(str, img))}) to match img_size={img}, "
                    f"got {tuple(coil_maps.shape)}"
                )
        elif coil_maps.dim() not in (3, 4) or coil_maps.shape[0] < 1 or 0 in coil_maps.shape:
            raise ValueError(
                f"coil_maps must have shape (coils, H, W) or (coils, D, H, W), got {tuple(coil_maps.shape)}"
            )
        if not bool(torch.isfinite(torch.view_as_real(coil_maps)).all()):
            raise ValueError("coil_maps contains NaN/Inf values; all entries must be finite")
        return coil_maps

    def _link_coil_maps(self) -> None:
        maps = torch.view_as_complex(self._coil_maps_real)[None]  # (1, coils, *S), shares memory
        self.physics._buffers["coil_maps"] = maps

    def _apply(self, fn, recurse=True):
        # Keep the complex buffer away from fn (e.g. .to(torch.float64) would drop its
        # imaginary part) and rebuild it from the converted real copy afterwards.
        self.physics._buffers.pop("coil_maps", None)
        try:
            return super()._apply(fn, recurse)
        finally:
            self._link_coil_maps()

    @property
    def coil_maps(self) -> torch.Tensor:
        """The complex coil sensitivities, shape ``(coils, *S)``."""
        return torch.view_as_complex(self._coil_maps_real)

    def sensitivity_norm(self) -> torch.Tensor:
        """``sum_c |S_c|^2`` per voxel, real, shape ``S`` (1 everywhere for normalised maps)."""
        return self._coil_maps_real.square().sum(dim=(0, -1))

    def zero_filled(self, y: torch.Tensor, *, rss: bool = False) -> torch.Tensor:
        """Coil-combined zero-filled reconstruction.

        Default: ``sum_c conj(S_c) F^H (M y_c) / sum_c |S_c|^2`` (Roemer's sensitivity-weighted
        combination; equal to ``A^H y`` for normalised maps, 0 where no coil is sensitive),
        shape ``(B, 2, *S)``. With ``rss=True``: the root-sum-of-squares magnitude of the coil
        images, as fastMRI's ``reconstruction_rss``, shape ``(B, 1, *S)``.
        """
        y = self.check_y(y)
        if rss:
            physics = self.physics
            dims = tuple(range(-len(self.img_size), 0))
            coil_images = physics.ifft(physics.to_torch_complex(physics.mask[:, :, None] * y), dim=dims)
            return coil_images.abs().square().sum(dim=1, keepdim=True).sqrt()
        norm = self.sensitivity_norm()
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        return torch.where(norm > 0, self.physics.A_adjoint(y) / safe, torch.zeros_like(safe))
