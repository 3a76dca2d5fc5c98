"""Dense linear algebra for small linear operators: the matrix itself and its thin SVD.

Projection samplers (DDRM) need ``A = U diag(S) V^T``. Operators with structure provide it in
closed form; every other :class:`~invsolve.operators.base.LinearOperator` small enough to hold
as a matrix gets it here: the matrix is built column by column from batched calls of ``A`` (or
row by row from ``A^T``, whichever side is smaller), rows that are identically zero (unsampled
k-space, masked pixels) are dropped, and the SVD comes from the eigendecomposition of the
smaller Gram matrix in float64.
"""

from __future__ import annotations

import math

import torch

#: Largest ``min(n_in, n_out)`` (after dropping zero rows) for which :func:`dense_svd` runs.
MAX_DENSE_SIZE = 8192


def _basis_chunks(size: int, shape, chunk: int, dtype: torch.dtype, device):
    """The standard basis of ``R^size``, ``chunk`` vectors at a time, each batch shaped ``(n, *shape)``."""
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        basis = torch.zeros(stop - start, size, dtype=dtype, device=device)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
        yield basis.reshape(-1, *shape)


def dense_matrix(operator, *, chunk: int = 512, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The ``(m, n)`` matrix of a linear operator on flattened tensors (``m = prod(y_shape)``).

    Built from ``A`` on the identity when ``n <= m`` and from ``A^T`` otherwise, ``chunk`` basis
    vectors per call, in ``dtype`` (default: the operator's).
    """
    if not getattr(operator, "linear", False):
        raise TypeError(f"dense_matrix needs a linear operator, got {type(operator).__name__}")
    dtype = dtype or operator.dtype or torch.float32
    device = operator.device
    n, m = math.prod(operator.x_shape), math.prod(operator.y_shape)
    use_forward = n <= m
    size = n if use_forward else m
    shape = operator.x_shape if use_forward else operator.y_shape
    apply = operator.A if use_forward else operator.A_adjoint
    cols = []
    for basis in _basis_chunks(size, shape, chunk, dtype, device):
        with torch.no_grad():
            cols.append(apply(basis).reshape(basis.shape[0], -1))
    stacked = torch.cat(cols, dim=0)  # (n, m) = A^T when built from A, (m, n) = A when built from A^T
    return stacked.T.contiguous() if use_forward else stacked


def dense_svd(operator, *, rcond: float = 1e-4, max_size: int = MAX_DENSE_SIZE
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``A = U diag(S) V^T`` of a small linear operator: ``(U (m, k), S (k,), V (n, k))``.

    Directions with ``S <= rcond * S_max`` are dropped (a truncated SVD): the Gram matrix determines
    a singular vector only to about ``eps S_max^2 / S^2``, which is ``2e-8`` at the default
    ``rcond = 1e-4``. Arithmetic in float64, results in the operator's dtype. Raises ``ValueError`` when the smaller side exceeds ``max_size``.
    """
    if not 0 < rcond < 1:
        raise ValueError(f"rcond must lie in (0, 1), got {rcond}")
    n, m = math.prod(operator.x_shape), math.prod(operator.y_shape)
    if min(n, m) > max_size:
        raise ValueError(
            f"{type(operator).__name__} maps {n} to {m} values: too large for a dense SVD "
            f"(limit {max_size} on the smaller side); give it a structured svd() method"
        )
    out_dtype = operator.dtype or torch.float32
    A = dense_matrix(operator, dtype=operator.dtype or torch.float64).to(torch.float64)
    rows = torch.nonzero(A.abs().amax(dim=1) > 0).squeeze(1)
    B = A[rows]
    wide = B.shape[0] <= B.shape[1]
    M = B if wide else B.T  # eigendecompose the smaller Gram matrix M M^T = W S^2 W^T
    evals, evecs = torch.linalg.eigh(M @ M.T)
    S, W = evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1)
    keep = S > rcond * S.max()
    S, W = S[keep], W[:, keep]
    other = (M.T @ W) / S  # the singular vectors of the larger side
    U_B, V = (W, other) if wide else (other, W)
    U = torch.zeros(A.shape[0], U_B.shape[1], dtype=torch.float64, device=A.device)
    U[rows] = U_B
    return U.to(out_dtype), S.to(out_dtype), V.to(out_dtype)


def frobenius_norm_sq(operator, *, chunk: int = 512) -> float:
    """``||A||_F^2 = trace(A^T A) = sum_j ||A e_j||^2`` of a linear operator, exactly, in float64.

    Probes ``A`` with the standard basis of its input, ``chunk`` vectors per call, without holding
    the matrix; ``n`` operator applications in all. It is the Laplacian of ``||y - A x||^2 / 2``.
    """
    if not getattr(operator, "linear", False):
        raise TypeError(f"frobenius_norm_sq needs a linear operator, got {type(operator).__name__}")
    dtype = operator.dtype or torch.float64
    n = math.prod(operator.x_shape)
    total = 0.0
    for basis in _basis_chunks(n, operator.x_shape, chunk, dtype, operator.device):
        with torch.no_grad():
            total += float(operator.A(basis).double().square().sum())
    return total
