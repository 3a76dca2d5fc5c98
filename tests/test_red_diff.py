"""RED-Diff (invsolve.samplers.red_diff): closed form on Gaussian priors, least squares, shapes, errors."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve import GaussianNoise, Measurement, SamplerOutput
from invsolve.operators import FourierMagnitude, MatrixOperator
from invsolve.priors import GaussianPrior
from invsolve.priors.vp import linear_beta_alphas_cumprod, vp_sigmas
from invsolve.samplers import red_diff
from invsolve.samplers.red_diff import adam_step, red_diff_sigmas

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_problem(d: int, m: int, sigma_y: float, batch: int = 1, seed: int = 0):
    g = gen(seed)
    mean = torch.randn(d, generator=g, dtype=F64)
    L = torch.randn(d, d, generator=g, dtype=F64)
    cov = L @ L.T / d + 0.2 * torch.eye(d, dtype=F64)
    prior = GaussianPrior(mean, cov)
    A = torch.randn(m, d, generator=g, dtype=F64)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), prior.sample(batch, g), g)
    return prior, meas, mean, cov, A


# -- 1. closed form ---------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting,w",
                         [("inverse_snr", lambda s: s), ("sqrt", math.sqrt), ("constant", lambda s: 1.0)],
                         ids=["inverse_snr", "sqrt", "constant"])
def test_constant_sigma_converges_to_the_closed_form_stationary_point(weighting, w):
    """Prior N(m, C): D(x, s) = m + C (C + s^2 I)^-1 (x - m). With x = mu + s eps,
        eps_hat - eps = (mu - D(x, s)) / s = (I - C (C + s^2 I)^-1)(mu - m) / s - C (C + s^2 I)^-1 eps
                      = s (C + s^2 I)^-1 (mu - m) - C (C + s^2 I)^-1 eps,
    so E[gradient] = A^T (A mu - y) / sigma_y^2 + lam w(s) s (C + s^2 I)^-1 (mu - m) (data_weight 1/sigma_y^2),
    which vanishes at mu* = (A^T A / sigma_y^2 + K)^-1 (A^T y / sigma_y^2 + K m), K = lam w(s) s (C + s^2 I)^-1."""
    d, m_dim, sigma_y, s, lam = 6, 3, 0.5, 0.7, 0.5
    prior, meas, mean, cov, A = gaussian_problem(d, m_dim, sigma_y)
    K = lam * w(s) * s * torch.linalg.inv(cov + s * s * torch.eye(d, dtype=F64))
    H = A.T @ A / sigma_y**2 + K
    mu_star = torch.linalg.solve(H, A.T @ meas.y[0] / sigma_y**2 + K @ mean)

    steps, keep, chains = 3000, 1500, 200
    tail = []
    out = red_diff(meas, prior, sigmas=[s] * steps, n_samples=chains, generator=gen(1), lr=0.01, lam=lam,
                   weighting=weighting, data_weight="likelihood",
                   callback=lambda info: tail.append(info.x) if info.step >= steps - keep else None)
    assert out.nfe == steps and out.samples.shape == (chains, 1, d)
    # With a constant Adam step mu keeps fluctuating around mu*; the time average of each chain over the
    # last `keep` steps estimates E[mu]. The chains are independent (own noise, elementwise Adam), so the
    # standard error of the mean of the chain averages is their spread / sqrt(chains): exact, whatever
    # the autocorrelation within a chain. 5 SE per coordinate (6 coordinates: false alarm < 1e-5).
    chain_means = torch.stack(tail).mean(dim=0)  # (chains, d)
    estimate = chain_means.mean(dim=0)
    se = chain_means.std(dim=0) / math.sqrt(chains)
    assert ((estimate - mu_star).abs() <= 5 * se).all(), ((estimate - mu_star) / se)
    assert se.max() < 5e-3  # the check is tight: mu* is O(1) and the prior mean differs from it by O(1)
    assert (mu_star - mean).abs().max() > 0.1


# -- 2. lam = 0 is least squares -------------------------------------------------------------------
def test_lam_zero_gives_the_least_squares_solution_from_a_noise_start():
    prior, meas, *_, A = gaussian_problem(6, 10, 0.3, batch=2)  # overdetermined, full column rank
    ls = torch.linalg.lstsq(A, meas.y.T).solution.T  # (2, 6)
    steps, lr = 1000, 0.1
    traj = []
    out = red_diff(meas, prior, steps=steps, n_samples=3, generator=gen(1), lr=lr, lam=0.0, init="noise",
                   callback=lambda info: traj.append(info.x))
    late = torch.stack(traj[steps // 2:]).reshape(-1, 3, 2, 6)
    # Adam with a constant step cycles around the minimiser (amplitude below lr) instead of settling;
    # the average of the last half is the minimiser to ~1e-5 (measured); every late iterate is within lr.
    assert (late.mean(0) - ls).abs().max() < 1e-4
    assert (late - ls).abs().max() < lr
    fid = out.diagnostics["data_fidelity"]  # (steps, 3, 2)
    ls_fid = 0.5 * (meas.y - ls @ A.T).square().sum(-1)
    assert (fid[0] > 10 * ls_fid).all()  # the noise start is far from the solution
    assert torch.allclose(fid[-100:].mean(0), ls_fid.expand(3, 2), rtol=1e-2)


# -- 3. nonlinear operator, batches ----------------------------------------------------------------
def image_prior(shape=(1, 4, 4)) -> GaussianPrior:
    d = math.prod(shape)
    L = torch.randn(d, d, generator=gen(30), dtype=F64)
    return GaussianPrior(torch.full(shape, 0.5, dtype=F64), L @ L.T / d + 0.05 * torch.eye(d, dtype=F64))


def test_phase_retrieval_with_a_nonlinear_operator_batches_and_samples():
    prior = image_prior()
    op = FourierMagnitude(prior.shape, oversampling=2.0, dtype=F64)
    meas = Measurement.simulate(op, GaussianNoise(0.01), prior.sample(2, gen(31)), gen(32))
    steps = []
    out = red_diff(meas, prior, steps=200, n_samples=3, generator=gen(33), init="noise", lam=0.05, lr=0.05,
                   callback=steps.append)
    assert isinstance(out, SamplerOutput) and out.nfe == 200 and len(steps) == 200
    assert out.samples.shape == (3, 2, 1, 4, 4) and torch.isfinite(out.samples).all()
    fid = out.diagnostics["data_fidelity"]
    assert fid.shape == (200, 3, 2) and out.diagnostics["loss"].shape == (200, 3, 2)
    final = 0.5 * (meas.y - op.A(out.samples.reshape(6, 1, 4, 4)).reshape(3, 2, 1, 8, 8)).square().sum((2, 3, 4))
    assert (final < 0.1 * fid[0]).all(), (final, fid[0])


def test_pseudo_inverse_start_maps_samples_to_their_measurement():
    prior, meas, *_ = gaussian_problem(6, 3, 0.1, batch=2)
    lr = 0.05
    out = red_diff(meas, prior, steps=1, n_samples=4, generator=gen(0), lr=lr)
    pinv = meas.operator.pseudo_inverse(meas.y)  # (2, 6)
    # Adam's first step moves each coordinate by lr * g / (|g| + 1e-8) <= lr: sample s of measurement b
    # is within lr of pinv(y_b), and the two measurements' starts are farther apart than that.
    assert (out.samples - pinv).abs().max() <= lr * (1 + 1e-9)
    assert (pinv[0] - pinv[1]).abs().max() > 4 * lr


def test_noiseless_data_and_the_default_schedule():
    prior, meas, *_ = gaussian_problem(6, 3, 0.0)
    out = red_diff(meas, prior, steps=30, n_samples=2, generator=gen(0))
    assert torch.isfinite(out.samples).all()
    sig = out.diagnostics["sigmas"]
    assert sig.shape == (30,) and (sig[1:] <= sig[:-1]).all()
    assert float(sig[0]) <= prior.sigma_max and float(sig[-1]) == pytest.approx(0.01, rel=1e-3)


# -- schedule and Adam ------------------------------------------------------------------------------
def test_paper_schedule_matches_the_authors_timesteps():
    """NVlabs/RED-diff: ts = range(0, 1000, 1000 // steps) visited in reverse, sigma_t = sqrt((1 - abar_t) / abar_t)."""
    prior = GaussianPrior(torch.zeros(2, dtype=F64), 1.0, sigma_max=200.0)
    table = vp_sigmas(linear_beta_alphas_cumprod())
    got = red_diff_sigmas(prior, 50, None, spacing="vp", sigma_max=None, rho=7.0)
    torch.testing.assert_close(got, table[list(range(0, 1000, 20))[::-1]], rtol=0, atol=0)
    assert float(got[0]) == pytest.approx(130.14, abs=0.01)
    capped = red_diff_sigmas(prior, 50, None, spacing="vp", sigma_max=1.0, rho=7.0)
    assert capped.shape == (50,) and float(capped[0]) <= 1.0 and (capped[1:] <= capped[:-1]).all()
    edm = red_diff_sigmas(prior, 10, None, spacing="edm", sigma_max=5.0, rho=7.0)
    assert edm.shape == (10,) and float(edm[0]) == pytest.approx(5.0) and float(edm[-1]) == pytest.approx(2e-3)
    explicit = red_diff_sigmas(prior, None, [2.0, 1.0, 0.0], spacing="vp", sigma_max=None, rho=7.0)
    assert explicit.tolist() == [2.0, 1.0]  # a trailing 0 (edm_sigmas style) is dropped


def test_adam_step_matches_torch_optim_adam():
    g = gen(5)
    p = torch.randn(3, 4, generator=g, dtype=F64)
    leaf = p.clone().requires_grad_(True)
    opt = torch.optim.Adam([leaf], lr=0.2, betas=(0.9, 0.99))
    mu, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
    for k in range(1, 6):
        grad = torch.randn(3, 4, generator=g, dtype=F64)
        leaf.grad = grad.clone()
        opt.step()
        mu, m, v = adam_step(mu, grad, m, v, k, lr=0.2, betas=(0.9, 0.99))
    torch.testing.assert_close(mu, leaf.detach(), rtol=1e-14, atol=1e-14)


# -- 4. bad input ------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    prior, meas, *_ = gaussian_problem(6, 3, 0.1)
    kw = dict(steps=3, generator=gen(0))
    for bad, match in [
        (dict(weighting="log"), "weighting"),
        (dict(init="zeros"), "init"),
        (dict(init=torch.zeros(2, 6, dtype=F64)), "init tensor"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=0.0), "lr"),
        (dict(lam=-1.0), "lam"),
        (dict(betas=(0.9, 1.0)), "betas"),
        (dict(spacing="cosine"), "spacing"),
        (dict(sigma_max=1e4), "sigma_max"),
        (dict(sigmas=[1.0, -0.5]), "sigmas"),
        (dict(steps=0), "steps"),
        (dict(data_weight=-1.0), "data_weight"),
    ]:
        with pytest.raises(ValueError, match=match):
            red_diff(meas, prior, **{**kw, **bad})
    with pytest.raises(TypeError, match="torch.Generator"):
        red_diff(meas, prior, steps=3, generator=None)
    noiseless = Measurement(meas.operator, GaussianNoise(0.0), meas.y)
    with pytest.raises(ValueError, match="likelihood"):
        red_diff(noiseless, prior, data_weight="likelihood", **kw)
    img = image_prior()
    phase = Measurement.simulate(FourierMagnitude(img.shape, dtype=F64), GaussianNoise(0.01), img.sample(1, gen(1)))
    for init in ("pseudo_inverse", "adjoint"):
        with pytest.raises(TypeError, match="linear operator"):
            red_diff(phase, img, init=init, **kw)


# -- 5. determinism ----------------------------------------------------------------------------------
def test_same_generator_same_result():
    prior, meas, *_ = gaussian_problem(6, 3, 0.1, batch=2)
    a = red_diff(meas, prior, steps=20, n_samples=3, generator=gen(0))
    b = red_diff(meas, prior, steps=20, n_samples=3, generator=gen(0))
    c = red_diff(meas, prior, steps=20, n_samples=3, generator=gen(1))
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)
