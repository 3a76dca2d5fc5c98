"""AFES, FKC and TDS against exact posteriors (Gaussian and GMM priors) and their failure modes.

Tolerances come from the weighted particle system's own standard errors: for a posterior coordinate
with variance ``v`` the Monte Carlo standard error of the mean is ``sqrt(v / ESS)`` and of the variance
about ``v sqrt(2 / ESS)``; each check allows 5 of them. ``ESS`` is the smallest effective sample size
over the run, not the final one: after a resampling at ESS = 190 the particles descend from at most
190 ancestors however uniform the final weights look.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from invsolve import GaussianNoise, Measurement, PoissonNoise
from invsolve.exact_posterior import exact_posterior
from invsolve.metrics import sliced_wasserstein
from invsolve.operators import MatrixOperator, Operator, dense_matrix, frobenius_norm_sq
from invsolve.priors import GaussianPrior
from invsolve.samplers import afes, exact, fkc, tds
from invsolve.samplers.fk_likelihood import ParticleLikelihood
from invsolve.samplers.particles import WeightDegeneracyError
from support import cardoso_gmm

F64 = torch.float64
C = 1.5  # the Gaussian prior's variance; data_variance = C makes the reverse kernels exact


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_problem(sigma_y: float = 0.3, batch: int = 1):
    g = gen(0)
    A = torch.randn(2, 4, generator=g, dtype=F64)
    prior = GaussianPrior(torch.full((4,), 0.5, dtype=F64), C)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), prior.sample(batch, g), g)
    return prior, meas


SAMPLERS = {
    "afes-sde": (afes, {}),
    "afes-sde-multinomial": (afes, dict(resampling="multinomial")),
    "afes-ode-langevin": (afes, dict(variant="ode_langevin", corrector_steps=2)),
    "fkc": (fkc, {}),
    "fkc-adaptive": (fkc, dict(cess_target=0.5)),
    "tds": (tds, {}),
}


def weighted_moments(out, b: int = 0):
    w = out.weights[:, b]
    s = out.samples[:, b]
    mean = (w[:, None] * s).sum(0)
    cov = (w[:, None] * (s - mean)).T @ (s - mean)
    ess = float(1 / w.square().sum())
    trace = out.diagnostics["ess"]
    return mean, cov, min(ess, float(trace[:, b].min())) if trace.numel() else ess


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_gaussian_posterior_mean_and_covariance(name):
    fn, kw = SAMPLERS[name]
    prior, meas = gaussian_problem()
    post = exact_posterior(meas, prior)
    out = fn(meas, prior, n_samples=4000, steps=50, data_variance=C, generator=gen(1), **kw)
    assert out.samples.shape == (4000, 1, 4) and out.log_weights.shape == (4000, 1)
    mean, cov, ess = weighted_moments(out)
    true_mean, true_cov = post.mean().reshape(4), post.covariance().reshape(4, 4)
    var = true_cov.diagonal()
    assert ess > 100
    assert torch.all((mean - true_mean).abs() < 5 * (var / ess).sqrt()), (mean, true_mean, ess)
    assert torch.all((cov.diagonal() - var).abs() < 5 * var * math.sqrt(2 / ess)), (cov.diagonal(), var, ess)


@pytest.mark.parametrize("name", ["afes-sde", "fkc", "fkc-adaptive"])
def test_log_evidence_matches_the_exact_value(name):
    fn, kw = SAMPLERS[name]
    prior, meas = gaussian_problem()
    exact_log_z = float(exact_posterior(meas, prior).log_evidence[0])
    errors = [float(fn(meas, prior, n_samples=1000, steps=50, data_variance=C, generator=gen(s), **kw)
                    .diagnostics["log_evidence"][0]) - exact_log_z for s in range(6)]
    se = statistics.stdev(errors) / math.sqrt(len(errors))
    assert abs(statistics.mean(errors)) < 4 * se + 0.01, errors


def test_tds_log_evidence_is_consistent_for_a_broad_likelihood():
    prior, meas = gaussian_problem(sigma_y=1.0)
    exact_log_z = float(exact_posterior(meas, prior).log_evidence[0])
    errors = [float(tds(meas, prior, n_samples=2000, steps=50, data_variance=C, generator=gen(s))
                    .diagnostics["log_evidence"][0]) - exact_log_z for s in range(6)]
    se = statistics.stdev(errors) / math.sqrt(len(errors))
    assert abs(statistics.mean(errors)) < 4 * se + 0.01, errors


def test_gmm_sliced_wasserstein_falls_as_particles_grow():
    prior = cardoso_gmm(8, seed=3)
    g = gen(4)
    A = torch.randn(2, 8, generator=g, dtype=F64)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(0.5), prior.sample(1, g), g)
    ref = exact(meas, prior, n_samples=2000, generator=gen(5)).samples[:, 0]
    sws = {}
    for n in (16, 256, 2048):
        vals = []
        for seed in range(2):
            out = afes(meas, prior, n_samples=n, steps=200, generator=gen(10 + seed))
            vals.append(sliced_wasserstein(out.samples[:, 0], ref, 50, gen(6), a_weights=out.weights[:, 0]))
        sws[n] = sum(vals) / len(vals)
    floor = sliced_wasserstein(exact(meas, prior, n_samples=2048, generator=gen(7)).samples[:, 0], ref, 50, gen(6))
    assert sws[2048] < sws[256] < sws[16], sws
    assert sws[2048] < 3 * floor, (sws, floor)


def test_batch_of_measurements_weights_each_separately():
    prior, meas = gaussian_problem(batch=2)
    post = exact_posterior(meas, prior)
    out = afes(meas, prior, n_samples=3000, steps=30, data_variance=C, generator=gen(2))
    assert out.samples.shape == (3000, 2, 4) and out.log_weights.shape == (3000, 2)
    assert out.diagnostics["log_evidence"].shape == (2,)
    for b in range(2):
        mean, _, ess = weighted_moments(out, b)
        var = post.covariance()[b].diagonal() if post.covariance().dim() == 3 else post.covariance().reshape(2, 4, 4)[b].diagonal()
        assert torch.all((mean - post.mean()[b].reshape(4)).abs() < 5 * (var / ess).sqrt())


@pytest.mark.parametrize("name", ["afes-sde", "tds"])
def test_chunking_and_seeds_are_invisible(name):
    fn, kw = SAMPLERS[name]
    prior, meas = gaussian_problem()
    a = fn(meas, prior, n_samples=50, steps=10, generator=gen(3), **kw)
    b = fn(meas, prior, n_samples=50, steps=10, generator=gen(3), chunk=7, **kw)
    assert torch.allclose(a.samples, b.samples) and torch.allclose(a.log_weights, b.log_weights)
    c = fn(meas, prior, n_samples=50, steps=10, generator=gen(4), **kw)
    assert not torch.allclose(a.samples, c.samples)


@pytest.mark.parametrize("name", ["afes-sde", "afes-ode-langevin", "fkc", "tds"])
@pytest.mark.parametrize("sigma_y", [1e-6, 1e-3, 1.0])
def test_weights_stay_finite_for_any_noise_level(name, sigma_y):
    fn, kw = SAMPLERS[name]
    prior, meas = gaussian_problem(sigma_y=sigma_y)
    out = fn(meas, prior, n_samples=64, steps=20, generator=gen(5), **kw)
    assert torch.isfinite(out.samples).all() and torch.isfinite(out.log_weights).all()
    assert torch.isfinite(out.diagnostics["log_evidence"]).all()


@pytest.mark.parametrize("fn", [afes, fkc, tds])
def test_noiseless_measurements_are_refused(fn):
    prior, meas = gaussian_problem()
    noiseless = Measurement(meas.operator, GaussianNoise(0.0), meas.y)
    with pytest.raises(ValueError, match="sigma_y > 0"):
        fn(noiseless, prior, n_samples=8, steps=5, generator=gen(0))


def test_bad_options_are_refused_early():
    prior, meas = gaussian_problem()
    with pytest.raises(ValueError, match="variant"):
        afes(meas, prior, n_samples=8, steps=5, generator=gen(0), variant="ode")
    with pytest.raises(ValueError, match="integrator"):
        afes(meas, prior, n_samples=8, steps=5, generator=gen(0), integrator="rk4")
    with pytest.raises(ValueError, match="ess_threshold"):
        fkc(meas, prior, n_samples=8, steps=5, generator=gen(0), ess_threshold=2.0)
    with pytest.raises(ValueError, match="exponents"):
        fkc(meas, prior, n_samples=8, steps=5, generator=gen(0), exponents=[0.0, 1.0])
    poisson = Measurement(meas.operator, PoissonNoise(10.0), meas.y.abs())
    with pytest.raises(TypeError, match="integrator='exact'"):
        afes(poisson, prior, n_samples=8, steps=5, generator=gen(0), integrator="exact")
    with pytest.raises(TypeError, match="GaussianNoise"):
        tds(poisson, prior, n_samples=8, steps=5, generator=gen(0))


class Wiggle(Operator):
    """``x -> W x + 0.3 sin(W x)``: a smooth nonlinear operator with bounded curvature (autograd path)."""

    def __init__(self, W: torch.Tensor) -> None:
        super().__init__((W.shape[1],), (W.shape[0],))
        self.register_buffer("W", W)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.W.T
        return z + 0.3 * torch.sin(z)


def test_hutchinson_laplacian_is_unbiased_for_a_nonlinear_operator():
    W = torch.randn(3, 4, generator=gen(8), dtype=F64)
    meas = Measurement(Wiggle(W), GaussianNoise(0.5), torch.randn(1, 3, generator=gen(9), dtype=F64))
    x = torch.randn(2, 4, generator=gen(10), dtype=F64)
    like = ParticleLikelihood(meas, 2, None, hutchinson_probes=4000, generator=gen(11))
    grad, lap = like.gradient_and_laplacian(x)
    for i in range(2):
        hess = torch.autograd.functional.hessian(lambda v: meas.log_likelihood(v[None])[0], x[i])
        exact_trace = float(hess.trace())
        # Rademacher probes: Var(z^T H z) = 2 (||H||_F^2 - sum_i H_ii^2)
        se = math.sqrt(2 * (hess.square().sum() - hess.diagonal().square().sum()) / 4000)
        assert abs(float(lap[i]) - exact_trace) < 5 * se + 1e-9
    g_auto = torch.func.vmap(torch.func.grad(lambda v: meas.log_likelihood(v[None])[0]))(x)
    assert torch.allclose(grad, g_auto)


def test_exact_laplacian_for_linear_gaussian_is_minus_frobenius_over_variance():
    A = torch.randn(3, 5, generator=gen(12), dtype=F64)
    op = MatrixOperator(A)
    assert frobenius_norm_sq(op) == pytest.approx(float(A.square().sum()))
    assert frobenius_norm_sq(op, chunk=2) == pytest.approx(float(dense_matrix(op).square().sum()))
    meas = Measurement(op, GaussianNoise(0.2), torch.zeros(1, 3, dtype=F64))
    like = ParticleLikelihood(meas, 4, None, hutchinson_probes=1, generator=gen(0))
    _, lap = like.gradient_and_laplacian(torch.randn(4, 5, dtype=F64))
    assert torch.allclose(lap, torch.full((4,), -float(A.square().sum()) / 0.04, dtype=F64))


def test_nonlinear_measurement_runs_the_euler_integrator():
    W = torch.randn(2, 4, generator=gen(13), dtype=F64)
    prior = GaussianPrior(torch.zeros(4, dtype=F64), 1.0)
    x_true = prior.sample(1, gen(14))
    meas = Measurement.simulate(Wiggle(W), GaussianNoise(1.0), x_true, gen(15))
    out = afes(meas, prior, sigmas=torch.linspace(1.0, 0, 101, dtype=F64).sqrt(), n_samples=200, generator=gen(16))
    assert out.diagnostics["integrator"] == "euler"
    assert torch.isfinite(out.samples).all() and torch.isfinite(out.log_weights).all()


def test_euler_integrator_agrees_with_the_exact_posterior_on_a_short_horizon():
    """The literal discretisation (drift -grad U, rate 1/2(|grad U|^2 - lap U) - s.grad U)."""
    prior = GaussianPrior(torch.zeros(1, dtype=F64), 1.0)
    meas = Measurement(MatrixOperator(torch.ones(1, 1, dtype=F64)), GaussianNoise(1.0), torch.full((1, 1), 2.0, dtype=F64))
    post = exact_posterior(meas, prior)
    out = afes(meas, prior, sigmas=torch.linspace(0.25, 0, 201, dtype=F64).sqrt(), integrator="euler",
               n_samples=20000, data_variance=1.0, generator=gen(17))
    mean, cov, ess = weighted_moments(out)
    var = float(post.covariance().reshape(()))
    assert abs(float(mean) - float(post.mean().reshape(()))) < 5 * math.sqrt(var / ess)
    assert abs(float(cov) - var) < 5 * var * math.sqrt(2 / ess)


def test_impossible_measurement_raises_a_clear_error():
    prior, meas = gaussian_problem()

    def poisoned(measurement):
        return Measurement(measurement.operator, measurement.noise, torch.full_like(measurement.y, float("nan")))

    with pytest.raises((WeightDegeneracyError, ValueError)):
        afes(poisoned(meas), prior, n_samples=8, steps=5, generator=gen(0))
