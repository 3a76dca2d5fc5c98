"""The Prior protocol, the VP adapter (epsilon, x0, v) and the SamplerOutput result type."""

from __future__ import annotations

import pytest
import torch

from invsolve import DenoiserPrior, SamplerOutput, VPPrior
from invsolve.priors import linear_beta_alphas_cumprod, sigma_to_timestep, vp_sigmas

DATA_STD = 0.7  # x0 ~ N(0, DATA_STD^2 I): every optimal predictor is known in closed form
ABAR = linear_beta_alphas_cumprod(1000)
SCHED = vp_sigmas(ABAR)


def sigma_at(t: torch.Tensor) -> torch.Tensor:
    """Invert the adapter's timestep map: log-sigma interpolated linearly between steps."""
    lo = t.floor().long().clamp(0, len(SCHED) - 2)
    frac = (t - lo).to(torch.float64)
    log_s = SCHED.log()
    return (log_s[lo] * (1 - frac) + log_s[lo + 1] * frac).exp()


def oracle(prediction: str):
    """Bayes-optimal VP network for Gaussian data, in the given parameterization."""

    def model(x_t, t):
        s = sigma_at(t).to(x_t.dtype).reshape(-1, 1, 1, 1)
        abar = 1 / (1 + s**2)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        var_t = a**2 * DATA_STD**2 + b**2
        x0 = a * DATA_STD**2 * x_t / var_t  # E[x0 | x_t]
        eps = b * x_t / var_t  # E[eps | x_t]
        if prediction == "epsilon":
            out = eps
        elif prediction == "x0":
            out = x0
        else:
            out = a * eps - b * x0
        return torch.cat([out, torch.full_like(out, 123.0)], dim=1)  # learned-sigma channels are dropped

    return model


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_vp_adapter_gives_the_exact_edm_denoiser(prediction):
    prior = VPPrior(oracle(prediction), ABAR, (1, 4, 4), prediction=prediction)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2
    sigma = torch.tensor([0.05, 1.3, 40.0], dtype=torch.float64)
    expected = x * DATA_STD**2 / (DATA_STD**2 + sigma.reshape(-1, 1, 1, 1) ** 2)
    torch.testing.assert_close(prior.denoise(x, sigma), expected, rtol=1e-10, atol=1e-10)
    score = prior.score(x, sigma)
    torch.testing.assert_close(score, -x / (DATA_STD**2 + sigma.reshape(-1, 1, 1, 1) ** 2), rtol=1e-9, atol=1e-9)


def test_vp_prior_sigma_range_and_errors():
    prior = VPPrior(oracle("epsilon"), ABAR, (1, 4, 4))
    assert prior.sigma_min == pytest.approx(float(SCHED[0]))
    assert prior.sigma_max == pytest.approx(float(SCHED[-1]))
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma must lie in the model's range"):
        prior.denoise(x, 1e4)
    with pytest.raises(ValueError, match="x must have shape"):
        prior.denoise(torch.zeros(1, 4, 4), 1.0)
    with pytest.raises(ValueError, match="prediction"):
        VPPrior(oracle("epsilon"), ABAR, (1, 4, 4), prediction="score")
    with pytest.raises(ValueError, match="alphas_cumprod"):
        VPPrior(oracle("epsilon"), ABAR.flip(0), (1, 4, 4))


def test_timestep_map_hits_integer_steps_exactly():
    t = sigma_to_timestep(SCHED[[0, 10, 999]], SCHED, quantize=False)
    torch.testing.assert_close(t, torch.tensor([0.0, 10.0, 999.0], dtype=torch.float64))
    mid = (SCHED[10] * SCHED[11]).sqrt()
    assert float(sigma_to_timestep(mid[None], SCHED, quantize=True)) in (10.0, 11.0)


def test_denoiser_prior_passes_per_item_sigma():
    seen = {}

    def denoiser(x, sigma):
        seen["sigma"] = sigma
        return x * 0.5

    prior = DenoiserPrior(denoiser, (2, 3, 3))
    x = torch.ones(4, 2, 3, 3)
    out = prior.denoise(x, 0.3)
    assert out.shape == x.shape and seen["sigma"].shape == (4,)
    torch.testing.assert_close(prior.score(x, 0.3), (out - x) / 0.09)
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        prior.denoise(x, torch.ones(3))


def test_sampler_output_weighted_and_unweighted_moments():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    out = SamplerOutput(samples=samples, nfe=10)
    torch.testing.assert_close(out.mean, samples.mean(0))
    torch.testing.assert_close(out.std, samples.std(0))
    torch.testing.assert_close(out.weights.sum(0), torch.ones(2, dtype=torch.float64))
    log_w = torch.full((5, 2), -torch.inf, dtype=torch.float64)
    log_w[3] = 0.0  # all weight on sample 3
    weighted = SamplerOutput(samples=samples, nfe=10, log_weights=log_w)
    torch.testing.assert_close(weighted.mean, samples[3])
    torch.testing.assert_close(weighted.std, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_weights must have shape"):
        SamplerOutput(samples=samples, nfe=1, log_weights=torch.zeros(5))
