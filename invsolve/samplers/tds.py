"""Twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei, Cunningham, NeurIPS 2023), the twisted-SMC baseline.

Sequential Monte Carlo over the reverse diffusion with the *twisting functions*

    ``p~_k(y | x_k) = N(y; A(D(x_k, sigma_k)), (sigma_y^2 + r_k) I)``,  ``r_k = c sigma_k^2 / (c + sigma_k^2)``

(the denoiser's estimate of ``x_0`` pushed through the operator, its variance inflated by the prior
variance ``r_k = Var[x_0 | x_k]``, estimated from the denoiser's Jacobian by default or ``c sigma^2 / (c + sigma^2)``
for a number ``c = data_variance`` (:mod:`invsolve.samplers.posterior_variance`); paper eq. 8 with the variance
of SPEC section 11). Per step (paper Algorithm 1, in the VE convention):

1. ``x0_hat = D(x_k)`` and ``grad log p~_k(y | x_k)`` by autograd through the network (one call + one VJP);
2. weight ``w_k = p(x_k | x_{k+1}) p~_k(y | x_k) / (p~_{k+1}(y | x_{k+1}) q(x_k | x_{k+1}))`` (the initial
   weight is ``p~_K(y | x_K)``; the final one uses the true likelihood ``p(y | x_0)``); resample when due;
3. propose ``x_{k-1} ~ q = N(m + h' grad log p~_k, v I)`` where ``N(m, v I)`` is the unguided reverse kernel
   (:func:`invsolve.samplers.fk_likelihood.reverse_kernel`), ``h = sigma_k^2 - sigma_{k-1}^2`` and
   ``h' = min(h, (sigma_y^2 + r_k) / ||A||^2)`` for linear operators: the guidance step is held to the twist's
   stiffness (a gradient step on ``||y - A x||^2 / (2 (sigma_y^2 + r_k))`` is stable only below that), since with
   the prior's own ``r_k`` (small on brain images: ``~6e-4`` at ``sigma = 0.1``) the full step overshoots and
   the particles diverge. Any proposal is corrected by the weights, so this changes efficiency, not the target.

The weights correct the twisting exactly, so TDS is consistent as ``N -> infinity`` for any twist; the
twist only decides how many particles that takes. Needs Gaussian noise (any differentiable operator).
"""

from __future__ import annotations

import math
import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, require_gaussian_noise, start
from invsolve.samplers.declaration import Need, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.fk_likelihood import reverse_kernel
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.particles import ParticleWeights, check_smc_options, gather_particles
from invsolve.samplers.posterior_variance import DATA_VARIANCE, check_data_variance, posterior_variance


def twist(measurement: Measurement, prior: Prior, x: torch.Tensor, sigma: float, variance: float,
          chunk: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(D(x), log p~(y | x), grad_x log p~(y | x))``, evaluated ``chunk`` particles at a time."""
    outs = []
    step = chunk or x.shape[0]
    for first in range(0, x.shape[0], step):
        with torch.enable_grad():
            xc = x[first:first + step].detach().requires_grad_(True)
            d = prior.denoise(xc, sigma)
            y = measurement.y if measurement.batch_size == 1 else measurement.y[first:first + step]
            # in float64: the log-weights are differences of large sums
            log_twist = GaussianNoise(math.sqrt(variance)).log_likelihood(y.double(), measurement.operator.A(d).double())
            (grad,) = torch.autograd.grad(log_twist.sum(), xc)
        outs.append((d.detach(), log_twist.detach(), grad))
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


def tds(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 64,
        generator: torch.Generator, callback: Callback | None = None, data_variance: float | str = "auto",
        resampling: str = "systematic", ess_threshold: float = 0.5, chunk: int | None = None,
        rho: float = 7.0) -> SamplerOutput:
    """Weighted particles ``(n_samples, B, *x_shape)`` with ``log_weights``; ``nfe = steps`` (each with a backward pass).

    Args:
        data_variance: ``"auto"`` or ``c`` (see the module docstring): the twist variance ``r_k`` and the
            reverse kernel's variance.
        resampling / ess_threshold / chunk: as in :func:`invsolve.samplers.afes.afes`.
    """
    check_smc_options(n_samples, resampling, ess_threshold, chunk)
    sigma_y = require_gaussian_noise(measurement, "TDS")
    if not sigma_y > 0:
        raise ValueError(f"TDS weights the last step by p(y | x_0), which needs sigma_y > 0; got {sigma_y}")
    check_data_variance(data_variance)
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    meas, y, n_items = run.measurement, measurement.y, run.n_items
    weights = ParticleWeights.uniform(n_samples, run.batch, y.device)
    x = run.initial_noise()
    log_prev = torch.zeros(n_items, dtype=torch.float64, device=y.device)  # log p~ at the previous particle
    log_proposal_ratio = torch.zeros_like(log_prev)  # log p(x | x_prev) - log q(x | x_prev)
    kernel_variance = posterior_variance(data_variance, prior, generator)
    op = measurement.operator
    norm_start = torch.Generator(y.device).manual_seed(0)
    stiffness = (op.operator_norm(generator=norm_start, dtype=y.dtype, device=y.device) ** 2
                 if isinstance(op, LinearOperator) else 0.0)
    held = 0
    for i, sigma, sigma_next in run.transitions():
        r = kernel_variance(x, sigma)
        variance = sigma_y**2 + r
        denoised, log_twist, grad = twist(meas, prior, x, sigma, variance, chunk)
        weights.reweight(log_twist - log_prev + log_proposal_ratio, i)
        idx = weights.resample(ess_threshold, resampling, generator)
        if idx is not None:
            x, denoised, log_twist, grad = (gather_particles(t, idx) for t in (x, denoised, log_twist, grad))
        m, v = reverse_kernel(x, denoised, sigma, sigma_next, r)
        step = sigma**2 - sigma_next**2
        if stiffness * step > variance:
            step, held = variance / stiffness, held + 1
        shift = step * grad
        x_new = m + shift + math.sqrt(v) * run.noise()
        # log N(x_new; m, v) - log N(x_new; m + shift, v) = (|x_new - m - shift|^2 - |x_new - m|^2) / (2 v)
        a = (x_new - m - shift).reshape(n_items, -1).double()
        b = (x_new - m).reshape(n_items, -1).double()
        log_proposal_ratio = (a.square().sum(1) - b.square().sum(1)) / (2 * v)
        log_prev = log_twist
        x = x_new
        run.report(i, sigma, x, denoised, ess=weights.ess_trace[-1], log_weights=weights.log_w.clone())
    with torch.no_grad():
        final = meas.log_likelihood(x).double()
    weights.reweight(final - log_prev + log_proposal_ratio, "final")
    return run.output(x, nfe=run.n_steps, log_weights=weights.log_w.to(y.dtype), data_variance=data_variance,
                      guidance_steps_held=held, **weights.diagnostics())


DECLARATION = SamplerDeclaration("tds", tds, default_steps=100, needs={Need.GAUSSIAN_NOISE}, label="TDS", ranges={
    "data_variance": DATA_VARIANCE, "ess_threshold": UNIT, "chunk": Range(1, 2**31, integer=True), "rho": RHO})
