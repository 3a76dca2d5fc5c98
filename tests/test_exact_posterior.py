"""Exact posterior of Gaussian / GMM priors under linear-Gaussian measurements, its sampler and evidence."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from invsolve import GaussianNoise, Measurement, PoissonNoise
from invsolve.exact_posterior import exact_posterior, gmm_posterior, log_evidence, operator_matrix
from invsolve.operators import MatrixOperator, Operator
from invsolve.priors import GaussianMixturePrior, GaussianPrior
from invsolve.samplers import exact
from support import Subsample

F64 = torch.float64


class Square(Operator):
    def _forward(self, x):
        return x.square()


def gmm(K, d, seed, layout="full"):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K, generator=g, dtype=F64) + 0.2
    mu = 2 * torch.randn(K, d, generator=g, dtype=F64)
    if layout == "full":
        L = torch.randn(K, d, d, generator=g, dtype=F64)
        cov = L @ L.transpose(-1, -2) / d + 0.1 * torch.eye(d, dtype=F64)
    elif layout == "shared":
        L = torch.randn(d, d, generator=g, dtype=F64)
        cov = L @ L.T / d + 0.1 * torch.eye(d, dtype=F64)
    else:
        cov = torch.rand(K, generator=g, dtype=F64) + 0.5
    return GaussianMixturePrior(w, mu, cov)


def problem(K=3, d=5, m=2, sigma_y=0.3, B=2, seed=0, layout="full"):
    prior = gmm(K, d, seed, layout)
    g = torch.Generator().manual_seed(seed + 100)
    A = torch.randn(m, d, generator=g, dtype=F64)
    x = prior.sample(B, g)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), x, g)
    return prior, A, meas


@pytest.mark.parametrize("layout", ["full", "shared", "isotropic"])
@pytest.mark.parametrize("sigma_y", [1.0, 0.3, 1e-3])
def test_posterior_matches_the_information_form_and_bayes_rule(layout, sigma_y):
    prior, A, meas = problem(sigma_y=sigma_y, layout=layout)
    post = exact_posterior(meas, prior)
    covs = prior.covariances
    K, d = prior.means.shape
    for b in range(meas.batch_size):
        y = meas.y[b]
        joint = []
        for k in range(K):
            # information form: Sigma' = (Sigma^-1 + A^T A / s^2)^-1, m' = Sigma' (A^T y / s^2 + Sigma^-1 mu)
            P = torch.linalg.inv(torch.linalg.inv(covs[k]) + A.T @ A / sigma_y**2)
            m = P @ (A.T @ y / sigma_y**2 + torch.linalg.solve(covs[k], prior.means[k]))
            post_cov = post.covariances if post.covariances.dim() == 2 else post.covariances[k]
            torch.testing.assert_close(post_cov, P, rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(post.means[b, k], m, rtol=1e-6, atol=1e-7)
            S = A @ covs[k] @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=F64)
            joint.append(math.log(prior.weights[k]) + MultivariateNormal(A @ prior.means[k], S).log_prob(y))
        joint = torch.stack(joint)
        evidence = torch.logsumexp(joint, 0)
        torch.testing.assert_close(post.log_evidence[b], evidence, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.log_weights[b], joint - evidence, rtol=1e-9, atol=1e-9)


def test_evidence_satisfies_bayes_identity_at_any_x():
    # log p(y) = log p(x) + log p(y | x) - log p(x | y) for every x: checks evidence, weights, means, covs at once
    prior, A, meas = problem(sigma_y=0.5, B=1)
    post = exact_posterior(meas, prior)
    posterior_density = post.component_prior(0)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    identity = prior.log_prob(x) + meas.log_likelihood(x) - posterior_density.log_prob(x)
    torch.testing.assert_close(identity, log_evidence(meas, prior).expand(4), rtol=1e-9, atol=1e-9)


def test_noiseless_limit_concentrates_on_the_affine_subspace():
    prior, A, meas0 = problem(sigma_y=0.0)
    post0 = exact_posterior(meas0, prior)
    samples = exact(meas0, prior, n_samples=50, generator=torch.Generator().manual_seed(0)).samples
    torch.testing.assert_close(samples @ A.T, meas0.y.expand(50, -1, -1), rtol=0, atol=1e-10)
    assert torch.isfinite(post0.log_evidence).all()
    # sigma_y = 0 is the limit of small sigma_y
    meas_small = Measurement(meas0.operator, GaussianNoise(1e-7), meas0.y)
    post_small = exact_posterior(meas_small, prior)
    torch.testing.assert_close(post0.means, post_small.means, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(post0.log_weights, post_small.log_weights, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(post0.covariances, post_small.covariances, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sigma_y", [0.4, 0.0])
def test_exact_sampler_matches_the_analytic_gaussian_posterior(sigma_y):
    """Sample mean and covariance within 4 standard errors of the closed form (independently computed)."""
    g = torch.Generator().manual_seed(11)
    d, m, n = 4, 2, 4000
    mu = torch.randn(d, generator=g, dtype=F64)
    L = torch.randn(d, d, generator=g, dtype=F64)
    cov = L @ L.T / d + 0.2 * torch.eye(d, dtype=F64)
    A = torch.randn(m, d, generator=g, dtype=F64)
    prior = GaussianPrior(mu, cov)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), prior.sample(1, g), g)
    # closed form via the joint Gaussian of (x, y): Schur complement, written independently of the library
    Syy = A @ cov @ A.T + sigma_y**2 * torch.eye(m, dtype=F64)
    Sxy = cov @ A.T
    M = mu + Sxy @ torch.linalg.solve(Syy, meas.y[0] - A @ mu)
    C = cov - Sxy @ torch.linalg.solve(Syy, Sxy.T)
    s = exact(meas, prior, n_samples=n, generator=torch.Generator().manual_seed(12)).samples[:, 0]
    assert_moments(s, M, C)


def assert_moments(s: torch.Tensor, M: torch.Tensor, C: torch.Tensor, z: float = 4.0) -> None:
    """Mean within z SE (SE^2 = C_ii / n) and covariance within z SE of the sample covariance
    (SE^2 = (C_ij^2 + C_ii C_jj) / (n - 1), the Gaussian case); a rounding-level floor for exact zeros."""
    n = s.shape[0]
    se_mean = (C.diagonal().clamp_min(0) / n).sqrt() + 1e-9
    assert ((s.mean(0) - M).abs() <= z * se_mean).all(), ((s.mean(0) - M) / se_mean)
    diag = C.diagonal().clamp_min(0)
    se_cov = ((C.square() + diag[:, None] * diag[None, :]) / (n - 1)).sqrt() + 1e-9
    S = torch.cov(s.T)
    assert ((S - C).abs() <= z * se_cov).all(), ((S - C) / se_cov)


def test_operator_without_matrix_is_probed_and_images_work():
    shape = (1, 3, 3)
    d = 9
    g = torch.Generator().manual_seed(5)
    L = torch.randn(d, d, generator=g, dtype=F64)
    prior = GaussianPrior(torch.zeros(shape, dtype=F64), L @ L.T + 0.1 * torch.eye(d, dtype=F64))
    op = Subsample(shape, [0, 4, 7]).to(F64)
    dense = operator_matrix(op)
    assert dense.shape == (3, 9) and dense.sum() == 3
    x = prior.sample(2, g)
    meas = Measurement.simulate(op, GaussianNoise(0.1), x, g)
    post = exact_posterior(meas, prior)
    ref = exact_posterior(Measurement(MatrixOperator(dense), GaussianNoise(0.1), meas.y), GaussianPrior(torch.zeros(d, dtype=F64), prior.covariance()))
    torch.testing.assert_close(post.means, ref.means)
    torch.testing.assert_close(post.log_evidence, ref.log_evidence)
    out = exact(meas, prior, n_samples=7, generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (7, 2, *shape)
    assert post.mean().shape == (2, *shape)


def test_pure_function_batches_and_shared_covariance():
    prior, A, meas = problem(layout="shared", B=3)
    cov = prior.covariances[0]
    lw, means, covs, ev = gmm_posterior(prior.log_weights, prior.means, cov, A, meas.y, 0.3)
    assert lw.shape == (3, 3) and means.shape == (3, 3, 5) and covs.shape == (5, 5) and ev.shape == (3,)
    torch.testing.assert_close(lw.exp().sum(1), torch.ones(3, dtype=F64))
    lw2, means2, covs2, ev2 = gmm_posterior(prior.log_weights, prior.means, cov.expand(3, 5, 5), A, meas.y, 0.3)
    torch.testing.assert_close(means, means2)
    torch.testing.assert_close(covs, covs2[1])


def test_refuses_what_it_cannot_do():
    prior, A, meas = problem()
    with pytest.raises(TypeError, match="GaussianNoise"):
        exact_posterior(Measurement(MatrixOperator(A), PoissonNoise(), meas.y.abs()), prior)
    with pytest.raises(TypeError, match="linear operator"):
        exact_posterior(Measurement(Square((5,), (5,)), GaussianNoise(0.1), torch.zeros(1, 5, dtype=F64)), prior)
    with pytest.raises(TypeError, match="GaussianPrior or GaussianMixturePrior"):
        exact_posterior(meas, object())
    rank_deficient = torch.cat([A[:1], A[:1]])
    with pytest.raises(ValueError, match="singular"):
        exact_posterior(Measurement(MatrixOperator(rank_deficient), GaussianNoise(0.0), meas.y), prior)
