"""TV baseline: the discrete gradient adjoint, optimality and limits of the PDHG solver."""

from __future__ import annotations

import pytest
import torch

from invsolve.baselines import finite_difference, finite_difference_adjoint, tv_reconstruct
from invsolve.operators import MatrixOperator


@pytest.mark.parametrize("dims", [(-1,), (-2, -1), (-3, -2, -1)])
def test_finite_difference_adjoint(dims):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 6, 7, generator=g, dtype=torch.float64)
    p = torch.randn(len(dims), *x.shape, generator=g, dtype=torch.float64)
    lhs = (finite_difference(x, dims) * p).sum()
    rhs = (x * finite_difference_adjoint(p, dims)).sum()
    assert abs(float(lhs - rhs)) <= 1e-12 * abs(float(lhs))


def test_zero_weight_gives_least_squares():
    g = torch.Generator().manual_seed(1)
    op = MatrixOperator(torch.randn(20, 8, generator=g, dtype=torch.float64))
    y = torch.randn(2, 20, generator=g, dtype=torch.float64)
    x = tv_reconstruct(op, y, 0.0, iterations=3000, spatial_dims=1)
    expected = torch.linalg.lstsq(op.matrix, y.T).solution.T
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)


def test_large_weight_gives_constant_signal():
    g = torch.Generator().manual_seed(2)
    op = MatrixOperator(torch.eye(8, dtype=torch.float64))
    y = torch.randn(1, 8, generator=g, dtype=torch.float64)
    x = tv_reconstruct(op, y.reshape(1, 8), 1e3, iterations=3000, spatial_dims=1)
    # identity operator, huge TV weight: the minimiser is the mean of y everywhere
    torch.testing.assert_close(x, y.mean().expand(1, 8), rtol=1e-4, atol=1e-4)


def test_tv_denoising_matches_subgradient_optimality():
    """For A = I in 1-D, check the first-order condition x - y + lam * D^T p = 0 with |p| <= 1."""
    g = torch.Generator().manual_seed(3)
    op = MatrixOperator(torch.eye(12, dtype=torch.float64))
    y = torch.cumsum(torch.randn(1, 12, generator=g, dtype=torch.float64), dim=1)
    lam = 0.5
    x = tv_reconstruct(op, y, lam, iterations=5000, spatial_dims=1)
    # Objective must not be improved by small perturbations.
    def objective(v):
        return 0.5 * (v - y).square().sum() + lam * (v[:, 1:] - v[:, :-1]).abs().sum()

    base = objective(x)
    for _ in range(50):
        d = 1e-3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        assert float(objective(x + d)) >= float(base) - 1e-9


def test_tv_rejects_bad_arguments():
    op = MatrixOperator(torch.eye(4, dtype=torch.float64))
    y = torch.zeros(1, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruct(op, y, -1.0, spatial_dims=1)
    with pytest.raises(ValueError, match="iterations"):
        tv_reconstruct(op, y, 0.1, iterations=0, spatial_dims=1)
    with pytest.raises(ValueError, match="y must have shape"):
        tv_reconstruct(op, torch.zeros(4, dtype=torch.float64), 0.1, spatial_dims=1)
