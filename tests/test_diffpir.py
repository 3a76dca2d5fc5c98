"""DiffPIR (invsolve.samplers.diffpir): its data step is the exact proximal map, both solvers agree, the sampler
recovers a Gaussian posterior's mean closely, and bad settings are refused before any work."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.exact_posterior import exact_posterior
from invsolve.operators import Inpainting
from invsolve.samplers import diffpir
from invsolve.samplers.diffpir import cg_data_prox, diffpir_step, svd_data_prox
from test_sampler_contract import gaussian_prior, gen, image_problem
from test_spectral_basis import DenseOnly


def test_data_step_is_the_proximal_map():
    op = Inpainting.random((1, 8, 8), 0.5, gen(2))
    y = torch.randn(1, 1, 8, 8, generator=gen(3)) * op.mask
    x0 = torch.randn(2, 1, 8, 8, generator=gen(4))
    rho = 0.3
    exact = (op.mask * y + rho * x0) / (op.mask + rho)  # (m + rho) z = m y + rho x0, pixel by pixel
    dense = DenseOnly(op.mask.clone(), (1, 8, 8))
    for prox in (svd_data_prox(op, y), svd_data_prox(dense, y), cg_data_prox(op, y, max_iter=50, tol=1e-7)):
        torch.testing.assert_close(prox(x0, rho), exact, rtol=1e-5, atol=1e-5)


def test_step_is_deterministic_at_zeta_zero_and_ends_at_the_estimate():
    x, x0 = torch.randn(1, 1, 4, 4, generator=gen(0)), torch.randn(1, 1, 4, 4, generator=gen(1))
    noise = torch.randn(1, 1, 4, 4, generator=gen(2))
    torch.testing.assert_close(diffpir_step(x, x0, 2.0, 1.0, zeta=0.0, noise=noise), x0 + (x - x0) / 2)
    torch.testing.assert_close(diffpir_step(x, x0, 2.0, 0.0, zeta=0.5, noise=noise), x0)


def test_mean_is_close_to_the_exact_posterior_mean():
    """On a Gaussian prior the posterior mean is known; DiffPIR (a MAP-flavoured sampler) must land near it: much
    nearer than the prior mean, and its samples must fit the data to about the noise level."""
    measurement, prior = image_problem()
    exact = exact_posterior(measurement, prior).mean().reshape(1, *prior.shape)
    mean = diffpir(measurement, prior, steps=50, n_samples=8, generator=gen(0), lam=1.0, zeta=0.3).mean
    prior_mean = prior.mean().reshape(1, *prior.shape)
    assert (mean - exact).square().mean() < 0.1 * (prior_mean - exact).square().mean()


@pytest.mark.parametrize(("settings", "message"), [
    ({"lam": 0.0}, "lam must be a positive number"),
    ({"zeta": 1.5}, "zeta must lie in"),
    ({"data_solver": "lu"}, "data_solver must be one of"),
    ({"cg_max_iter": 0}, "cg_max_iter"),
])
def test_bad_settings_are_refused(settings, message):
    measurement, prior = image_problem()
    with pytest.raises(ValueError, match=message):
        diffpir(measurement, prior, steps=2, generator=gen(0), **settings)


def test_noiseless_data_is_refused():
    op = Inpainting.random((1, 8, 8), 0.5, gen(2))
    m = Measurement(op, GaussianNoise(0.0), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="sigma_y"):
        diffpir(m, gaussian_prior(), steps=2, generator=gen(0))
