"""The prior's posterior variance ``Var[x_0 | x_sigma]`` from the denoiser (Tweedie's covariance, Hutchinson)."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve.priors import GaussianPrior
from invsolve.samplers.posterior_variance import (
    check_data_variance, denoiser_posterior_variance, gaussian_posterior_variance, posterior_variance)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_isotropic_gaussian_prior_is_exact(sigma):
    """``dD/dx = c / (c + sigma^2) I``: the Rademacher estimate has no variance and equals the closed form."""
    c = 0.7
    prior = GaussianPrior(torch.zeros(16, dtype=F64), c)
    x = prior.sample(3, gen(0)) + sigma * torch.randn(3, 16, generator=gen(1), dtype=F64)
    got = denoiser_posterior_variance(prior, x, sigma, gen(2))
    assert got == pytest.approx(gaussian_posterior_variance(c, sigma), rel=1e-6)


def test_anisotropic_gaussian_prior_within_standard_error():
    """Covariance ``Q diag(lam) Q^T``: the mean per-coordinate posterior variance is ``mean(sigma^2 lam / (lam + sigma^2))``.

    Hutchinson's estimator with Rademacher probes has variance ``2 sum_{i != j} J_ij^2`` per probe; the
    tolerance is 5 standard errors over the rows used.
    """
    d, sigma = 64, 0.4
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(3), dtype=F64))
    lam = torch.logspace(-2, 0.5, d, dtype=F64)
    prior = GaussianPrior(torch.zeros(d, dtype=F64), q @ torch.diag(lam) @ q.T)
    x = prior.sample(256, gen(4)) + sigma * torch.randn(256, d, generator=gen(5), dtype=F64)
    got = denoiser_posterior_variance(prior, x, sigma, gen(6), coordinates=256 * d)
    jac = q @ torch.diag(lam / (lam + sigma**2)) @ q.T
    exact = float(sigma**2 * torch.diagonal(jac).mean())
    off = jac - torch.diag(torch.diagonal(jac))
    se = sigma**2 * math.sqrt(2 * float(off.square().sum())) / d / math.sqrt(256)
    assert abs(got - exact) < 5 * se
    assert se < 0.05 * exact  # the check is informative


def test_rows_used_follow_the_coordinate_budget():
    calls = []

    class Counting(GaussianPrior):
        def denoise(self, x, sigma):
            calls.append(x.shape[0])
            return super().denoise(x, sigma)

    prior = Counting(torch.zeros(8, dtype=F64), 1.0)
    denoiser_posterior_variance(prior, torch.randn(100, 8, dtype=F64), 1.0, gen(0), coordinates=40)
    assert calls == [5]


def test_resolver_and_validation():
    prior = GaussianPrior(torch.zeros(4, dtype=F64), 2.0)
    fixed = posterior_variance(2.0, prior, gen(0))
    auto = posterior_variance("auto", prior, gen(0))
    x = torch.randn(4, 4, dtype=F64)
    assert fixed(x, 1.0) == pytest.approx(2.0 / 3.0)
    assert auto(x, 1.0) == pytest.approx(2.0 / 3.0)
    for bad in (-1.0, math.inf, "estimate", None):
        with pytest.raises(ValueError, match="data_variance"):
            check_data_variance(bad)
