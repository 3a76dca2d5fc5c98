"""Latent priors: the exact latent posterior of a linear decoder, and latent DPS against it."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators import MatrixOperator
from invsolve.priors import GaussianPrior
from invsolve.priors.latent import LatentPrior, exact_latent_posterior
from invsolve.samplers.declaration import declaration

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_latent_problem(d_z: int = 4, d_x: int = 6, m: int = 3, sigma_y: float = 0.1, seed: int = 0):
    """``z ~ N(mu, C)`` (4-d), ``x = W z + b`` (6-d), ``y = A x + n`` (3 measurements)."""
    g = gen(seed)
    root = torch.randn(d_z, d_z, generator=g, dtype=F64) / d_z**0.5
    latent = GaussianPrior(torch.randn(d_z, generator=g, dtype=F64) * 0.3, root @ root.T + 0.2 * torch.eye(d_z,
                                                                                                            dtype=F64))
    weight = torch.randn(d_x, d_z, generator=g, dtype=F64)
    bias = torch.randn(d_x, generator=g, dtype=F64) * 0.1
    prior = LatentPrior.linear(latent, weight, bias, (d_x,))
    a = torch.randn(m, d_x, generator=g, dtype=F64)
    z = latent.sample(1, g)
    meas = Measurement.simulate(MatrixOperator(a), GaussianNoise(sigma_y), prior.decode(z), g)
    return meas, prior, a


def test_the_exact_latent_posterior_is_the_closed_form():
    meas, prior, a = linear_latent_problem()
    weight, bias = prior.linear_decoder
    c, mu, s2 = prior.latent.covariance(), prior.latent.mean(), 0.1**2
    aw = a @ weight
    cov = torch.linalg.inv(torch.linalg.inv(c) + aw.T @ aw / s2)
    mean = cov @ (torch.linalg.solve(c, mu) + aw.T @ (meas.y[0] - a @ bias) / s2)
    post = exact_latent_posterior(meas, prior)
    torch.testing.assert_close(post.mean()[0], mean)
    torch.testing.assert_close(post.covariance()[0] if post.covariance().dim() == 3 else post.covariance(), cov)


def test_linear_latent_prior_round_trip_and_shapes():
    _, prior, _ = linear_latent_problem()
    z = prior.latent.sample(5, gen(3))
    torch.testing.assert_close(prior.encode(prior.decode(z)), z)  # W has full column rank
    assert prior.shape == (4,) and prior.image_shape == (6,)
    with pytest.raises(ValueError, match="weight must be"):
        LatentPrior.linear(prior.latent, torch.zeros(5, 4, dtype=F64), torch.zeros(6, dtype=F64), (6,))


def test_latent_dps_moves_the_latents_to_the_exact_posterior():
    """DPS is an approximation; with a small step budget its mean lies much nearer the exact posterior mean than
    the prior mean does, and its decoded samples have the image shape."""
    meas, prior, _ = linear_latent_problem(sigma_y=0.05)
    exact = exact_latent_posterior(meas, prior).mean()[0]
    out = declaration("latent-dps").run(meas, prior, steps=100, n_samples=2000, generator=gen(5), zeta=0.3)
    assert out.samples.shape == (2000, 1, 6) and out.diagnostics["decoder_calls"] == 101
    latent_mean = prior.encode(out.samples.reshape(2000, 6)).mean(0)
    prior_gap = float((prior.latent.mean() - exact).norm())
    assert float((latent_mean - exact).norm()) < 0.35 * prior_gap


def test_pixel_samplers_refuse_latent_priors_and_latent_samplers_plain_ones():
    meas, prior, _ = linear_latent_problem()
    with pytest.raises(ValueError, match="diffuses the latents of an autoencoder"):
        declaration("dps").run(meas, prior, steps=3, n_samples=1, generator=gen(0))
    plain = GaussianPrior(torch.zeros(6, dtype=F64), torch.eye(6, dtype=F64))
    with pytest.raises(ValueError, match="a latent prior"):
        declaration("latent-dps").run(meas, plain, steps=3, n_samples=1, generator=gen(0))
