"""Baseline samplers (unconditional EDM, DPS, PiGDM, exact) on Gaussian / GMM priors and image tensors."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement, SamplerOutput, StepInfo
from invsolve.exact_posterior import exact_posterior
from invsolve.metrics import sliced_wasserstein, sliced_wasserstein_floor
from invsolve.operators import MatrixOperator, Operator
from invsolve.priors import DenoiserPrior, GaussianPrior
from invsolve.samplers import ddrm, dps, edm_sample, edm_sigmas, exact, pigdm, unconditional
from support import Subsample, cardoso_gmm

F64 = torch.float64


def gmm_problem(sigma_y: float, d: int = 8, m: int = 2, seed: int = 0):
    prior = cardoso_gmm(d, seed)
    g = torch.Generator().manual_seed(seed + 1)
    A = torch.randn(m, d, generator=g, dtype=F64)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), prior.sample(1, g), g)
    return prior, meas


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Small settings for speed; every sampler with the common signature.
SAMPLERS = {
    "unconditional": (unconditional, dict(steps=10)),
    "unconditional-stochastic": (unconditional, dict(steps=10, method="stochastic", s_churn=20.0)),
    "unconditional-ancestral": (unconditional, dict(steps=10, method="ancestral")),
    "dps": (dps, dict(steps=20, zeta=0.1)),
    "pigdm": (pigdm, dict(steps=10)),
    "pigdm-heun": (pigdm, dict(steps=10, method="heun")),
    "ddrm": (ddrm, dict(steps=10)),
    "exact": (exact, {}),
}


# -- unconditional sampling reproduces the prior --------------------------------------------------
@pytest.mark.parametrize("method,kw", [("heun", {}), ("stochastic", dict(s_churn=40.0))])
def test_unconditional_sampling_reproduces_a_gmm_prior(method, kw):
    prior = cardoso_gmm(8, seed=0)
    n = 2000
    out = edm_sample(prior, steps=50, n_samples=n, generator=gen(1), method=method, dtype=F64, **kw)
    assert out.samples.shape == (n, 1, 8) and out.nfe == 99
    ref = prior.sample(n, gen(2))
    floor = sliced_wasserstein_floor(lambda k, g: prior.sample(k, g), n, 100, gen(3), reference=ref)
    sw = sliced_wasserstein(out.samples[:, 0], ref, 100, gen(3))
    assert sw < 3 * floor, (sw, floor)


# -- exactness on Gaussians -----------------------------------------------------------------------
def assert_moments(s: torch.Tensor, M: torch.Tensor, C: torch.Tensor, z: float = 4.0) -> None:
    """Mean within z SE (SE^2 = C_ii / n), covariance entries within z SE of the sample covariance
    (SE^2 = (C_ij^2 + C_ii C_jj) / (n - 1) for Gaussian samples), plus a rounding-level floor."""
    n = s.shape[0]
    diag = C.diagonal().clamp_min(0)
    se_mean = (diag / n).sqrt() + 1e-9
    assert ((s.mean(0) - M).abs() <= z * se_mean).all(), (s.mean(0) - M) / se_mean
    se_cov = ((C.square() + diag[:, None] * diag[None, :]) / (n - 1)).sqrt() + 1e-9
    assert ((torch.cov(s.T) - C).abs() <= z * se_cov).all(), (torch.cov(s.T) - C) / se_cov


def gaussian_problem(sigma_y: float, isotropic: bool):
    g = gen(21)
    d, m = 4, 2
    mu = torch.randn(d, generator=g, dtype=F64)
    if isotropic:
        cov = torch.tensor(1.5, dtype=F64)
    else:
        L = torch.randn(d, d, generator=g, dtype=F64)
        cov = L @ L.T / d + 0.3 * torch.eye(d, dtype=F64)
    prior = GaussianPrior(mu, cov, shape=(d,))
    A = torch.randn(m, d, generator=g, dtype=F64)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), prior.sample(1, g), g)
    return prior, meas


SIGMAS = edm_sigmas(100, 2e-3, 1e3)  # sigma_max far above the data scale: the N(0, sigma_max^2) start is exact


@pytest.mark.parametrize("sigma_y", [0.5, 0.0])
def test_pigdm_is_exact_for_isotropic_gaussian_priors(sigma_y):
    """PiGDM's Gaussian approximation of p(x0 | x_sigma) is exact for N(mu, v I) with data_variance = v."""
    prior, meas = gaussian_problem(sigma_y, isotropic=True)
    post = exact_posterior(meas, prior)
    out = pigdm(meas, prior, sigmas=SIGMAS, n_samples=4000, generator=gen(22), method="heun", data_variance=1.5)
    assert_moments(out.samples[:, 0], post.mean()[0], post.covariance()[0])


@pytest.mark.parametrize("method,kw", [("heun", {}), ("stochastic", dict(s_churn=30.0))])
def test_edm_on_the_exact_posterior_denoiser_reproduces_the_posterior(method, kw):
    """The diffusion sampler is exact for Gaussians: run on the posterior's own (exact) denoiser."""
    prior, meas = gaussian_problem(0.3, isotropic=False)
    post = exact_posterior(meas, prior)
    posterior_prior = post.component_prior(0, sigma_max=1e3)
    out = edm_sample(posterior_prior, steps=100, n_samples=4000, generator=gen(23), method=method, dtype=F64, **kw)
    assert_moments(out.samples[:, 0], post.mean()[0], post.covariance()[0])


# -- determinism, robustness, shapes --------------------------------------------------------------
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_same_generator_same_result_different_seed_different_result(name):
    fn, kw = SAMPLERS[name]
    prior, meas = gmm_problem(0.1)
    a = fn(meas, prior, n_samples=5, generator=gen(0), **kw)
    b = fn(meas, prior, n_samples=5, generator=gen(0), **kw)
    c = fn(meas, prior, n_samples=5, generator=gen(1), **kw)
    assert isinstance(a, SamplerOutput)
    torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=0)
    assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("sigma_y", [0.0, 1e-3, 1.0])
def test_no_nan_or_inf_for_any_noise_level(name, sigma_y):
    fn, kw = SAMPLERS[name]
    prior, meas = gmm_problem(sigma_y)
    out = fn(meas, prior, n_samples=8, generator=gen(3), **kw)
    assert out.samples.shape == (8, 1, 8)
    assert torch.isfinite(out.samples).all()


class NoSVD(Subsample):
    svd = None


class SquaredPixels(Operator):
    """A nonlinear operator: squares of some pixels."""

    def __init__(self, x_shape, index):
        super().__init__(x_shape, (len(index),))
        self.index = torch.as_tensor(index)

    def _forward(self, x):
        return x.reshape(x.shape[0], -1)[:, self.index].square()


def image_prior():
    shape = (1, 4, 4)
    g = gen(30)
    L = torch.randn(16, 16, generator=g, dtype=F64)
    return GaussianPrior(torch.full(shape, 0.5, dtype=F64), L @ L.T / 16 + 0.05 * torch.eye(16, dtype=F64))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_image_tensors_and_a_batch_of_measurements(name):
    fn, kw = SAMPLERS[name]
    prior = image_prior()
    op = Subsample(prior.shape, [0, 3, 5, 10, 15]).to(F64)
    x = prior.sample(2, gen(31))
    meas = Measurement.simulate(op, GaussianNoise(0.05), x, gen(32))
    steps = []
    out = fn(meas, prior, n_samples=3, generator=gen(33), callback=steps.append, **kw)
    assert out.samples.shape == (3, 2, 1, 4, 4)
    assert torch.isfinite(out.samples).all()
    assert steps and all(isinstance(s, StepInfo) for s in steps)
    assert out.mean.shape == (2, 1, 4, 4)


def test_pigdm_conjugate_gradient_path_matches_the_dense_path():
    prior = image_prior()
    index = [0, 3, 5, 10, 15]
    op = Subsample(prior.shape, index).to(F64)
    meas = Measurement.simulate(op, GaussianNoise(0.1), prior.sample(1, gen(40)), gen(41))
    flat_prior = GaussianPrior(prior.mean(), prior.covariance())
    matrix = torch.eye(16, dtype=F64)[index]
    flat_meas = Measurement(MatrixOperator(matrix), GaussianNoise(0.1), meas.y)
    a = pigdm(meas, prior, steps=8, n_samples=4, generator=gen(42), cg_tol=1e-12)
    b = pigdm(flat_meas, flat_prior, steps=8, n_samples=4, generator=gen(42))
    torch.testing.assert_close(a.samples.reshape(4, 1, 16), b.samples, rtol=1e-7, atol=1e-7)


class _TallMatrix(MatrixOperator):
    """A matrix operator that hides its matrix from PiGDM's dense path, so that CG runs."""

    def __getattr__(self, name):
        if name == "matrix":
            raise AttributeError(name)
        return super().__getattr__(name)

    def _forward(self, x):
        return x @ self._buffers["matrix"].T

    def _adjoint(self, y):
        return y @ self._buffers["matrix"]


def test_pigdm_image_space_path_matches_the_dense_path_for_tall_operators():
    """More measurements than unknowns (as multi-coil MRI): CG runs in image space (push-through identity)."""
    prior = GaussianPrior(torch.zeros(6, dtype=F64), torch.eye(6, dtype=F64) * 0.7)
    base = torch.randn(3, 6, generator=gen(60), dtype=F64)
    matrix = torch.cat([base, 0.5 * base, torch.randn(3, 6, generator=gen(61), dtype=F64) * 1e-3])  # rank-deficient
    y = torch.randn(1, 9, generator=gen(62), dtype=F64)
    a = pigdm(Measurement(_TallMatrix(matrix), GaussianNoise(1e-3), y), prior, steps=8, n_samples=4,
              generator=gen(63), cg_tol=1e-14, cg_max_iter=500, data_variance=0.7)
    b = pigdm(Measurement(MatrixOperator(matrix), GaussianNoise(1e-3), y), prior, steps=8, n_samples=4,
              generator=gen(63), data_variance=0.7)
    torch.testing.assert_close(a.samples, b.samples, rtol=1e-6, atol=1e-6)


def test_dps_works_with_a_nonlinear_operator_and_any_prior():
    base = image_prior()
    prior = DenoiserPrior(lambda x, s: base.denoise(x, s), base.shape, sigma_min=2e-3, sigma_max=80.0)
    op = SquaredPixels(prior.shape, [1, 6, 11])
    meas = Measurement.simulate(op, GaussianNoise(0.0), base.sample(1, gen(50)), gen(51))
    out = dps(meas, prior, steps=30, n_samples=4, generator=gen(52), zeta=0.05)
    assert out.samples.shape == (4, 1, 1, 4, 4) and torch.isfinite(out.samples).all() and out.nfe == 30
    with pytest.raises(TypeError, match="linear operator"):
        pigdm(meas, prior, steps=5, n_samples=1, generator=gen(0))


def test_ddrm_needs_an_svd_and_honours_noiseless_data():
    prior = image_prior()
    index = [0, 3, 5, 10, 15]
    x = prior.sample(1, gen(60))
    meas = Measurement.simulate(NoSVD(prior.shape, index).to(F64), GaussianNoise(0.0), x, gen(61))
    with pytest.raises(TypeError, match="SVD"):
        ddrm(meas, prior, steps=5, n_samples=1, generator=gen(0))
    meas = Measurement.simulate(Subsample(prior.shape, index).to(F64), GaussianNoise(0.0), x, gen(61))
    out = ddrm(meas, prior, steps=50, n_samples=20, generator=gen(62))
    # measured pixels stay within the final denoising error of the data (sigma_min = 2e-3)
    got = out.samples.reshape(20, 16)[:, index]
    assert (got - meas.y).abs().max() < 1e-2
    free = out.samples.reshape(20, 16)[:, [1, 2, 4]]
    assert free.std(0).min() > 0.05  # unmeasured pixels keep their posterior spread


def test_unconditional_without_a_measurement_and_argument_errors():
    prior = cardoso_gmm(8, 0)
    out = unconditional(None, prior, steps=5, n_samples=3, generator=gen(0))
    assert out.samples.shape == (3, 1, 8) and out.samples.dtype == torch.float32
    _, meas = gmm_problem(0.1)
    with pytest.raises(TypeError, match="torch.Generator"):
        dps(meas, prior, steps=5, n_samples=1, generator=None)
    with pytest.raises(ValueError, match="shape"):
        pigdm(meas, cardoso_gmm(4, 0), steps=5, n_samples=1, generator=gen(0))
    with pytest.raises(ValueError, match="decreasing"):
        edm_sample(prior, sigmas=[1.0, 2.0, 0.0], generator=gen(0))
    with pytest.raises(ValueError, match="method"):
        edm_sample(prior, steps=3, generator=gen(0), method="rk4")
    sig = edm_sigmas(5, 0.01, 10.0)
    assert sig.shape == (6,) and sig[0] == pytest.approx(10.0) and sig[4] == pytest.approx(0.01) and sig[5] == 0


@pytest.mark.slow
def test_unconditional_reproduces_a_gmm_prior_at_d80():
    prior = cardoso_gmm(80, seed=1)
    n = 2000
    out = edm_sample(prior, steps=100, n_samples=n, generator=gen(1), dtype=F64)
    ref = prior.sample(n, gen(2))
    floor = sliced_wasserstein_floor(lambda k, g: prior.sample(k, g), n, 100, gen(3), reference=ref)
    assert sliced_wasserstein(out.samples[:, 0], ref, 100, gen(3)) < 3 * floor
