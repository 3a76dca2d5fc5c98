"""The singular bases of a linear operator, applied without forming them when the operator has structure.

Projection samplers (DDRM, and the exact Gaussian algebra of DAPS / AFES / FKC / TDS) work in the SVD
``A = U diag(S) V^T`` and only ever *apply* ``U`` and ``V``: ``x -> V^T x`` (:meth:`project`) and
``z -> V z`` (:meth:`embed`) on flattened rows. Held as dense ``(d, k)`` matrices these cost ``O(d k)`` memory
and time per application, quadratic in the pixels: a 256x256 inpainting mask would need an 8.6 GB ``V``. An
operator that is a coordinate selection (inpainting: ``U = V`` = identity columns of the observed pixels)
applies them as a gather and a scatter instead, ``O(d)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DenseBasis:
    """Orthonormal columns ``Q (d, k)`` held as a matrix."""

    matrix: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x Q`` for rows ``x (n, d)`` -> ``(n, k)``."""
        return x @ self.matrix

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """``z Q^T`` for rows ``z (n, k)`` -> ``(n, d)``."""
        return z @ self.matrix.T

    def select(self, keep: torch.Tensor) -> DenseBasis:
        return DenseBasis(self.matrix[:, keep])

    def to(self, *, dtype: torch.dtype, device: torch.device) -> DenseBasis:
        return DenseBasis(self.matrix.to(dtype=dtype, device=device))


@dataclass(frozen=True)
class CoordinateBasis:
    """The identity columns ``e_{index[j]}`` of ``R^d``: projection gathers, embedding scatters (``O(d)``)."""

    index: torch.Tensor
    dim: int

    def __post_init__(self) -> None:
        if self.index.dim() != 1 or self.index.dtype != torch.long:
            raise ValueError("index must be a 1-D tensor of int64 coordinates")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, int(self.index.numel()))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        return z.new_zeros(z.shape[0], self.dim).index_copy_(1, self.index, z)

    def select(self, keep: torch.Tensor) -> CoordinateBasis:
        return CoordinateBasis(self.index[keep], self.dim)

    def to(self, *, dtype: torch.dtype, device: torch.device) -> CoordinateBasis:
        return CoordinateBasis(self.index.to(device), self.dim)


SpectralBasis = DenseBasis | CoordinateBasis


def has_structured_bases(operator) -> bool:
    """Whether ``operator`` applies its singular bases without dense matrices (``operator.spectral_bases()``)."""
    return callable(getattr(operator, "spectral_bases", None))


def spectral_decomposition(operator, like: torch.Tensor | None = None
                           ) -> tuple[SpectralBasis, torch.Tensor, SpectralBasis]:
    """``(U, S, V)`` of a linear operator with ``A = U diag(S) V^T``, keeping the non-zero singular values.

    Uses ``operator.spectral_bases()`` when the operator has one (structured, nothing dense), else wraps the
    matrices of ``operator.svd()``. Singular values at or below ``eps * max(m, d) * S_max`` are dropped. With
    ``like``, everything comes in its dtype and on its device.
    """
    if has_structured_bases(operator):
        U, S, V = operator.spectral_bases()
    else:
        svd = getattr(operator, "svd", None)
        if not callable(svd):
            raise TypeError(
                f"an SVD of the operator is needed: operator.svd() -> (U (m, k), S (k,), V (d, k)) on flattened "
                f"tensors (every LinearOperator has one); {type(operator).__name__} has none"
            )
        U, S, V = (DenseBasis(t) if i != 1 else t for i, t in enumerate(svd()))
    eps = torch.finfo(S.dtype).eps
    keep = S > eps * max(U.shape[0], V.shape[0]) * S.max().clamp_min(0)
    if not bool(keep.all()):
        U, S, V = U.select(keep), S[keep], V.select(keep)
    if like is not None:
        U, V = U.to(dtype=like.dtype, device=like.device), V.to(dtype=like.dtype, device=like.device)
        S = S.to(dtype=like.dtype, device=like.device)
    return U, S, V
