"""A dense matrix as an operator on vectors: the workhorse of exact-posterior tests."""

from __future__ import annotations

import torch

from invsolve.operators.base import LinearOperator


class MatrixOperator(LinearOperator):
    """``A x`` for a dense ``(m, n)`` matrix acting on batches of vectors ``(B, n) -> (B, m)``.

    Exposes its thin SVD (:meth:`svd`) for projection samplers.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
            raise ValueError(
                f"matrix must be a 2-D torch.Tensor of shape (m, n), got "
                f"{tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__}"
            )
        if not matrix.is_floating_point():
            raise TypeError(f"matrix must be float32 or float64, got {matrix.dtype}")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("matrix contains NaN/Inf values")
        m, n = matrix.shape
        super().__init__((n,), (m,))
        self.register_buffer("matrix", matrix)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.T

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.matrix

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thin SVD ``A = U diag(S) V^T``: returns ``(U (m, k), S (k,), V (n, k))``."""
        U, S, Vh = torch.linalg.svd(self.matrix, full_matrices=False)
        return U, S, Vh.T

    def pseudo_inverse(self, y: torch.Tensor, *, damping: float = 0.0, **_: object) -> torch.Tensor:
        """Exact (damped) least-squares solution through the SVD."""
        U, S, V = self.svd()
        rcond = torch.finfo(S.dtype).eps * max(self.matrix.shape) * S.max()
        inv = torch.where(S > rcond, S / (S.square() + damping), torch.zeros_like(S))
        return ((self.check_y(y) @ U) * inv) @ V.T
