"""DAPS against exact posteriors: exact for isotropic Gaussian priors (both conditionals), close on a GMM."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.exact_posterior import exact_posterior
from invsolve.metrics import sliced_wasserstein
from invsolve.operators import MatrixOperator
from invsolve.priors import GaussianPrior
from invsolve.samplers import daps, exact
from support import cardoso_gmm

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_problem(batch: int = 1):
    g = gen(0)
    A = torch.randn(2, 4, generator=g, dtype=F64)
    prior = GaussianPrior(torch.full((4,), 0.5, dtype=F64), 1.5)
    return Measurement.simulate(MatrixOperator(A), GaussianNoise(0.3), prior.sample(batch, g), g), prior


@pytest.mark.parametrize("conditional", ["svd", "cg"])
@pytest.mark.parametrize("data_variance", ["auto", 1.5])
def test_exact_for_isotropic_gaussian_prior(conditional, data_variance):
    """Mean within 5 standard errors ``sqrt(v / n)``, variances within 5 ``v sqrt(2 / n)``, covariances too."""
    meas, prior = gaussian_problem(batch=2)
    n = 6000
    out = daps(meas, prior, steps=20, n_samples=n, generator=gen(1), data_variance=data_variance,
               conditional=conditional, cg_tol=1e-12, cg_max_iter=100)
    post = exact_posterior(meas, prior)
    for b in range(2):
        s = out.samples[:, b]
        mean, cov = post.means[b, 0], post.covariances if post.covariances.dim() == 2 else post.covariances[0]
        v = torch.diagonal(cov)
        assert ((s.mean(0) - mean).abs() < 5 * (v / n).sqrt()).all()
        emp = torch.cov(s.T)
        tol = 5 * torch.sqrt((v[:, None] * v[None, :] + cov.square()) / n)
        assert ((emp - cov).abs() < tol).all()
    assert out.nfe == 20 and out.log_weights is None


def test_svd_and_cg_conditionals_agree_draw_for_draw_in_distribution():
    meas, prior = gaussian_problem()
    a = daps(meas, prior, steps=10, n_samples=4000, generator=gen(2), conditional="svd").samples[:, 0]
    b = daps(meas, prior, steps=10, n_samples=4000, generator=gen(3), conditional="cg", cg_tol=1e-12).samples[:, 0]
    assert sliced_wasserstein(a, b, 50, gen(4)) < 0.06


def test_gmm_posterior_is_informed_but_not_exact():
    """A multimodal posterior (25-mode GMM, d = 8, 2 measurements), where ``p(x_0 | x_t)`` is far from Gaussian.

    DAPS is *not* exact there: measured SW 3.1 at 100 steps against a floor of 0.04 (PiGDM: 1.4; 200 steps
    2.8, the ODE estimate ``ode_steps=5`` no better); it is informed by ``y`` (the prior's own draws: SW ~ 9).
    The check pins both facts, so a change that makes it exact or uninformed shows up here.
    """
    prior = cardoso_gmm(8, seed=3)
    g = gen(5)
    A = torch.randn(2, 8, generator=g, dtype=F64)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(0.5), prior.sample(1, g), g)
    n = 2000
    ref = exact(meas, prior, n_samples=n, generator=gen(6)).samples[:, 0]
    floor = sliced_wasserstein(exact(meas, prior, n_samples=n, generator=gen(7)).samples[:, 0], ref, 100, gen(8))
    uninformed = sliced_wasserstein(prior.sample(n, gen(10)), ref, 100, gen(8))
    sw = sliced_wasserstein(daps(meas, prior, steps=100, n_samples=n, generator=gen(9)).samples[:, 0], ref, 100, gen(8))
    assert 10 * floor < sw < 0.5 * uninformed


def test_refuses_bad_input_before_work():
    meas, prior = gaussian_problem()
    with pytest.raises(ValueError, match="conditional"):
        daps(meas, prior, generator=gen(0), conditional="langevin")
    with pytest.raises(ValueError, match="data_variance"):
        daps(meas, prior, generator=gen(0), data_variance=-1.0)
    noiseless = Measurement(meas.operator, GaussianNoise(0.0), meas.y)
    with pytest.raises(ValueError, match="sigma_y > 0"):
        daps(noiseless, prior, generator=gen(0))
