"""GaussianPrior / GaussianMixturePrior: the denoiser is Tweedie's formula on the analytic diffused density."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal

from invsolve.priors import GaussianMixturePrior, GaussianPrior, Prior

F64 = torch.float64


def random_gmm(K: int, d: int, seed: int, layout: str):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K, generator=g, dtype=F64) + 0.1
    mu = 3 * torch.randn(K, d, generator=g, dtype=F64)
    if layout == "full":
        L = torch.randn(K, d, d, generator=g, dtype=F64)
        cov = L @ L.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=F64)
    elif layout == "shared":
        L = torch.randn(d, d, generator=g, dtype=F64)
        cov = L @ L.T + 0.05 * torch.eye(d, dtype=F64)
    elif layout == "diagonal":
        cov = torch.diag_embed(torch.rand(K, d, generator=g, dtype=F64) + 0.1)
    else:  # isotropic per component
        cov = torch.rand(K, generator=g, dtype=F64) + 0.1
    return w, mu, cov


def dense_covariances(K, d, cov):
    cov = torch.as_tensor(cov, dtype=F64)
    if cov.dim() == 1:
        return cov[:, None, None] * torch.eye(d, dtype=F64)
    if cov.dim() == 2:
        return cov.expand(K, d, d)
    return cov


def tweedie_reference(w, mu, covs, x, sigma):
    """``x + sigma^2 grad log p_sigma(x)`` by autograd through torch.distributions' mixture density."""
    K, d = mu.shape
    sig = torch.as_tensor(sigma, dtype=F64).reshape(-1)
    out, logp = [], []
    for i in range(x.shape[0]):
        s2 = float(sig[i if sig.numel() > 1 else 0]) ** 2
        mix = MixtureSameFamily(Categorical(probs=w / w.sum()), MultivariateNormal(mu, covs + s2 * torch.eye(d, dtype=F64)))
        xi = x[i : i + 1].detach().clone().requires_grad_(True)
        lp = mix.log_prob(xi)
        (grad,) = torch.autograd.grad(lp.sum(), xi)
        out.append(xi.detach() + s2 * grad)
        logp.append(lp.detach())
    return torch.cat(out), torch.cat(logp)


@pytest.mark.parametrize("layout", ["full", "shared", "diagonal", "isotropic"])
@pytest.mark.parametrize("sigma", [1e-3, 0.4, 3.0, 100.0])
def test_gmm_denoiser_is_tweedie_of_the_diffused_density(layout, sigma):
    K, d = 3, 5
    w, mu, cov = random_gmm(K, d, seed=1, layout=layout)
    prior = GaussianMixturePrior(w, mu, cov)
    g = torch.Generator().manual_seed(2)
    # points near the components and far away
    x = torch.cat([mu[:2] + 0.3 * torch.randn(2, d, generator=g, dtype=F64), 8 * torch.randn(3, d, generator=g, dtype=F64)])
    ref, ref_logp = tweedie_reference(w, mu, dense_covariances(K, d, cov), x, sigma)
    torch.testing.assert_close(prior.denoise(x, sigma), ref, rtol=1e-8, atol=1e-8 * max(1.0, sigma))
    torch.testing.assert_close(prior.log_prob(x, sigma), ref_logp, rtol=1e-10, atol=1e-9)
    score = prior.score(x, sigma)
    torch.testing.assert_close(score, (ref - x) / sigma**2, rtol=1e-6, atol=1e-6 / sigma)


def test_per_item_sigma_and_float32():
    K, d = 4, 3
    w, mu, cov = random_gmm(K, d, seed=3, layout="full")
    prior = GaussianMixturePrior(w, mu, cov)
    g = torch.Generator().manual_seed(4)
    x = 4 * torch.randn(6, d, generator=g, dtype=F64)
    sigma = torch.tensor([0.01, 2.0, 0.01, 50.0, 2.0, 0.3], dtype=F64)
    ref, _ = tweedie_reference(w, mu, dense_covariances(K, d, cov), x, sigma)
    out = prior.denoise(x, sigma)
    torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-7)
    for i in range(6):  # grouping by sigma is the same as one call per item
        torch.testing.assert_close(out[i : i + 1], prior.denoise(x[i : i + 1], float(sigma[i])))
    out32 = prior.denoise(x.float(), sigma.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, ref.float(), rtol=1e-5, atol=1e-4)


def test_gaussian_prior_closed_form_and_image_shape():
    g = torch.Generator().manual_seed(5)
    shape = (1, 2, 3)
    d = 6
    mean = torch.randn(shape, generator=g, dtype=F64)
    L = torch.randn(d, d, generator=g, dtype=F64)
    cov = L @ L.T
    prior = GaussianPrior(mean, cov)
    assert isinstance(prior, Prior) and prior.shape == shape
    x = torch.randn(4, *shape, generator=g, dtype=F64)
    for sigma in (1e-3, 0.7, 30.0):
        expected = mean.reshape(-1) + (x.reshape(4, d) - mean.reshape(-1)) @ torch.linalg.solve(
            cov + sigma**2 * torch.eye(d, dtype=F64), cov
        )
        torch.testing.assert_close(prior.denoise(x, sigma), expected.reshape(4, *shape), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(prior.mean(), mean.reshape(-1))
    torch.testing.assert_close(prior.covariance(), cov, rtol=1e-10, atol=1e-10)


def test_singular_covariance_is_exact_for_positive_sigma():
    d = 4
    u = torch.tensor([[1.0, 2.0, 0.0, -1.0]], dtype=F64)
    cov = u.T @ u  # rank one
    prior = GaussianPrior(torch.zeros(d, dtype=F64), cov)
    x = torch.tensor([[1.0, 0.5, -2.0, 3.0]], dtype=F64)
    for sigma in (1e-3, 1.0):
        expected = x @ torch.linalg.solve(cov + sigma**2 * torch.eye(d, dtype=F64), cov)
        torch.testing.assert_close(prior.denoise(x, sigma), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(prior.denoise(x, 0.0), x)  # the sigma -> 0 limit on the data


def test_cardoso_gmm_at_d800_is_stable_across_sigma():
    d = 800
    grid = [(i, j) for i in range(-2, 3) for j in range(-2, 3)]
    means = torch.tensor([[-8.0 * i, -8.0 * j] * (d // 2) for i, j in grid], dtype=F64)
    w = torch.randn(25, generator=torch.Generator().manual_seed(0), dtype=F64).square()
    prior = GaussianMixturePrior(w, means, 1.0)
    g = torch.Generator().manual_seed(1)
    x0 = prior.sample(3, g)
    for sigma in (1e-3, 1e-1, 1.0, 10.0, 100.0):
        x = x0 + sigma * torch.randn(3, d, generator=g, dtype=F64)
        out = prior.denoise(x, sigma)
        assert torch.isfinite(out).all()
        # one dominant component away from sigma ~ mode spacing: D = mu_k + (x - mu_k) / (1 + sigma^2)
        if sigma <= 1.0:
            k = prior.responsibilities(x, sigma).argmax(dim=1)
            expected = means[k] + (x - means[k]) / (1 + sigma**2)
            torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    # against autograd on the analytic density, for two points at an intermediate sigma
    sigma = 6.0
    x = x0[:2] + sigma * torch.randn(2, d, generator=g, dtype=F64)
    xr = x.clone().requires_grad_(True)
    comps = Independent(Normal(means, math.sqrt(1 + sigma**2)), 1)
    lp = MixtureSameFamily(Categorical(probs=w / w.sum()), comps).log_prob(xr)
    (grad,) = torch.autograd.grad(lp.sum(), xr)
    ref = x + sigma**2 * grad
    torch.testing.assert_close(prior.denoise(x, sigma), ref, rtol=1e-8, atol=1e-7)
    assert prior.sigma_max > 10 * math.sqrt(8.0**2 * 2 * d / 2)  # covers the spread of the means


@pytest.mark.parametrize("layout", ["full", "shared", "isotropic"])
def test_sampling_matches_mixture_moments(layout):
    K, d = 3, 3
    w, mu, cov = random_gmm(K, d, seed=6, layout=layout)
    prior = GaussianMixturePrior(w, mu, cov)
    n = 20000
    s = prior.sample(n, torch.Generator().manual_seed(7))
    assert s.shape == (n, d) and s.dtype == F64
    mean, C = prior.mean(), prior.covariance()
    se = (C.diagonal() / n).sqrt()
    assert ((s.mean(0) - mean).abs() / se).max() < 4.5
    same = prior.sample(5, torch.Generator().manual_seed(8))
    torch.testing.assert_close(same, prior.sample(5, torch.Generator().manual_seed(8)), rtol=0, atol=0)


def test_denoiser_is_differentiable():
    w, mu, cov = random_gmm(2, 3, seed=9, layout="full")
    prior = GaussianMixturePrior(w, mu, cov)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: prior.denoise(t, 0.7), (x,))


def test_invalid_arguments_raise_clear_errors():
    mu = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixturePrior(torch.tensor([-1.0, 2.0]), mu, 1.0)
    with pytest.raises(ValueError, match="means"):
        GaussianMixturePrior(torch.ones(3), mu, 1.0)
    with pytest.raises(ValueError, match="covariances must have shape"):
        GaussianMixturePrior(torch.ones(2), mu, torch.ones(2, 4, 4))
    bad = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPrior(torch.zeros(3), bad)
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianPrior(torch.zeros(3), -torch.eye(3))
    prior = GaussianPrior(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        prior.denoise(torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        prior.denoise(torch.zeros(2, 3), -1.0)
