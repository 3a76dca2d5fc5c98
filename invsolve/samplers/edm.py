"""Unconditional sampling in the EDM / VE sigma convention (Karras et al., NeurIPS 2022).

Pure pieces, reused by the guided samplers:

* :func:`edm_sigmas` -- the schedule of eq. 5, ``sigma_i = (sigma_max^(1/rho) + i/(N-1)
  (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``, with ``sigma_N = 0``;
* :func:`heun_step` -- Algorithm 1, lines 4-8 (Euler step, then the 2nd-order correction
  unless the next sigma is 0);
* :func:`churn` -- Algorithm 2, lines 4-6 (raise the noise from ``sigma`` to
  ``sigma_hat = (1 + gamma) sigma`` with fresh noise);
* :func:`ddim_step` -- the DDIM update (Song et al., ICLR 2021, eq. 12) written in the VE
  convention: with ``s = eta * sigma' * sqrt(1 - sigma'^2 / sigma^2)``,
  ``x' = D + sqrt(sigma'^2 - s^2) (x - D) / sigma + s z``. ``eta = 0`` is the Euler
  step of the probability-flow ODE; ``eta = 1`` is the ancestral (DDPM posterior) step
  ``x' = D + (sigma'/sigma)^2 (x - D) + sigma' sqrt(1 - sigma'^2/sigma^2) z``;
* :func:`integrate` -- the loop over the schedule with any denoiser and any of the methods.

:func:`edm_sample` draws from a prior; :func:`unconditional` is the same with the common
sampler signature, so the prior itself can be a row of every comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from invsolve.measurement import Measurement
from invsolve.priors.base import Prior
from invsolve.samplers._common import check_generator, check_n_samples, check_pair, check_prior, randn, split_samples
from invsolve.samplers.declaration import NONNEGATIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.output import SamplerOutput, StepInfo

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
METHODS = ("heun", "stochastic", "euler", "ddim", "ancestral")


def edm_sigmas(
    steps: int,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Karras et al. (2022), eq. 5: ``steps`` decreasing noise levels from ``sigma_max`` to ``sigma_min``, then 0.

    Returns a ``(steps + 1,)`` tensor.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if steps == 1:
        ramp = torch.zeros(1, dtype=torch.float64)
    else:
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)]).to(dtype=dtype, device=device)


def check_sigmas(sigmas: torch.Tensor | list) -> torch.Tensor:
    """A valid schedule: 1-D, at least two entries, finite, non-negative, strictly decreasing."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.dim() != 1 or s.numel() < 2:
        raise ValueError("sigmas must be a 1-D sequence of at least 2 noise levels (the last is usually 0)")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("sigmas must be finite and >= 0")
    if not bool((s[1:] < s[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing")
    if float(s[0]) <= 0:
        raise ValueError("the first sigma must be > 0")
    return s


def schedule(prior: Prior, steps: int | None, sigmas, rho: float = 7.0) -> torch.Tensor:
    """``sigmas`` if given, else :func:`edm_sigmas` over the prior's range; float64 on CPU."""
    if sigmas is not None:
        return check_sigmas(sigmas)
    if steps is None:
        raise ValueError("give steps or sigmas")
    return edm_sigmas(steps, prior.sigma_min, prior.sigma_max, rho)


def heun_step(denoise: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
              denoised: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One step of Karras et al. (2022), Algorithm 1 (lines 4-8): returns ``(x_next, D(x, sigma), nfe)``.

    ``denoised`` may pass an already computed ``D(x, sigma)``.
    """
    nfe = 0
    if denoised is None:
        denoised, nfe = denoise(x, sigma), 1
    d = (x - denoised) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next > 0:
        d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        nfe += 1
    return x_next, denoised, nfe


def churn(x: torch.Tensor, sigma: float, gamma: float, noise: torch.Tensor, s_noise: float = 1.0
          ) -> tuple[torch.Tensor, float]:
    """Karras et al. (2022), Algorithm 2, lines 5-6: ``sigma_hat = (1 + gamma) sigma``,
    ``x_hat = x + sqrt(sigma_hat^2 - sigma^2) * s_noise * noise``."""
    sigma_hat = sigma * (1.0 + gamma)
    return x + math.sqrt(max(sigma_hat**2 - sigma**2, 0.0)) * s_noise * noise, sigma_hat


def ddim_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float, eta: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """DDIM (Song et al., 2021, eq. 12) in the VE convention; ``eta`` in [0, 1] (1 = ancestral)."""
    if sigma_next == 0:
        return denoised
    s = eta * sigma_next * math.sqrt(max(1.0 - (sigma_next / sigma) ** 2, 0.0))
    out = denoised + math.sqrt(max(sigma_next**2 - s**2, 0.0)) / sigma * (x - denoised)
    if s > 0:
        out = out + s * noise
    return out


def stochastic_gamma(sigma: float, n_steps: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """``gamma_i`` of Algorithm 2: ``min(S_churn / N, sqrt(2) - 1)`` inside ``[S_tmin, S_tmax]``, else 0."""
    if s_churn > 0 and s_tmin <= sigma <= s_tmax:
        return min(s_churn / n_steps, math.sqrt(2.0) - 1.0)
    return 0.0


def integrate(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    method: str,
    generator: torch.Generator,
    eta: float = 1.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    callback: Callable[[StepInfo], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Run ``x`` (already at noise ``sigmas[0]``) down the schedule; returns ``(x, nfe per sample)``.

    ``method``: ``"heun"`` (Alg. 1), ``"stochastic"`` (Alg. 2, churn parameters ``s_*``),
    ``"euler"`` (DDIM with eta = 0), ``"ddim"`` (with ``eta``), ``"ancestral"`` (DDIM with eta = 1).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "euler":
        method, eta = "ddim", 0.0
    elif method == "ancestral":
        method, eta = "ddim", 1.0
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    sig = [float(s) for s in sigmas]
    n = len(sig) - 1
    nfe = 0
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        if method == "ddim":
            denoised = denoise(x, sigma)
            nfe += 1
            noise = randn(x.shape, generator, x.dtype, x.device) if eta > 0 and sigma_next > 0 else None
            x = ddim_step(x, denoised, sigma, sigma_next, eta, noise)
        else:
            if method == "stochastic":
                gamma = stochastic_gamma(sigma, n, s_churn, s_tmin, s_tmax)
                if gamma > 0:
                    x, sigma = churn(x, sigma, gamma, randn(x.shape, generator, x.dtype, x.device), s_noise)
            x, denoised, k = heun_step(denoise, x, sigma, sigma_next)
            nfe += k
        if callback is not None:
            callback(StepInfo(step=i, total_steps=n, sigma=sigma, x=x, denoised=denoised))
    return x, nfe


def _no_grad_denoiser(prior: Prior) -> Denoiser:
    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.no_grad():
            return prior.denoise(x, sigma)

    return denoise


def edm_sample(
    prior: Prior,
    *,
    steps: int | None = 18,
    sigmas=None,
    n_samples: int = 1,
    batch_size: int = 1,
    generator: torch.Generator,
    callback: Callable[[StepInfo], None] | None = None,
    method: str = "heun",
    eta: float = 1.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    rho: float = 7.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SamplerOutput:
    """Draw ``n_samples x batch_size`` samples from ``prior`` (Karras et al., 2022, Alg. 1 / Alg. 2, or DDIM).

    Starts from ``x ~ N(0, sigma_0^2 I)``. Returns ``samples`` of shape
    ``(n_samples, batch_size, *prior.shape)``; ``nfe`` counts denoiser calls per sample
    (``2 steps - 1`` for Heun).
    """
    check_prior(prior)
    check_generator(generator)
    check_n_samples(n_samples)
    check_n_samples(batch_size)
    sig = schedule(prior, steps, sigmas, rho)
    dev = torch.device(device) if device is not None else generator.device
    x = float(sig[0]) * randn((n_samples * batch_size, *prior.shape), generator, dtype, dev)
    x, nfe = integrate(
        _no_grad_denoiser(prior), x, sig, method=method, generator=generator, eta=eta,
        s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise, callback=callback,
    )
    return SamplerOutput(samples=split_samples(x, n_samples, batch_size), nfe=nfe,
                         diagnostics={"sigmas": sig, "method": method})


def unconditional(measurement: Measurement | None, prior: Prior, *, steps: int | None = 18, sigmas=None,
                  n_samples: int = 1, generator: torch.Generator, callback: Callable[[StepInfo], None] | None = None,
                  method: str = "heun", eta: float = 1.0, s_churn: float = 0.0, s_tmin: float = 0.0,
                  s_tmax: float = math.inf, s_noise: float = 1.0, rho: float = 7.0) -> SamplerOutput:
    """The prior as a "posterior" sampler: :func:`edm_sample` with the common signature.

    The measurement is ignored except for the batch size ``B``, dtype and device (``None``
    means ``B = 1``, float32, the generator's device), so samples have the shape
    ``(n_samples, B, *x_shape)`` of every other sampler. Settings as for :func:`edm_sample`.
    """
    where: dict = {}
    batch = 1
    if measurement is not None:
        check_pair(measurement, prior)
        where = {"dtype": measurement.y.dtype, "device": measurement.y.device}
        batch = measurement.batch_size
    return edm_sample(prior, steps=steps, sigmas=sigmas, n_samples=n_samples, batch_size=batch,
                      generator=generator, callback=callback, method=method, eta=eta, s_churn=s_churn,
                      s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise, rho=rho, **where)


DECLARATION = SamplerDeclaration("unconditional", unconditional, default_steps=18, label="Unconditional", ranges={
    "eta": UNIT, "s_churn": NONNEGATIVE, "s_tmin": NONNEGATIVE, "s_tmax": Range(0), "s_noise": NONNEGATIVE,
    "rho": RHO})
