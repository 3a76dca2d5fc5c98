"""Denoising diffusion restoration models (DDRM; Kawar, Elad, Ermon, Song, NeurIPS 2022).

DDRM works in the spectral domain of ``A = U diag(s) V^T``. With ``x_bar = V^T x``
and ``y_bar = diag(s)^-1 U^T y`` (so ``y_bar_i = x_bar_i + (sigma_y / s_i) n_i``),
each coordinate moves from noise level ``sigma`` to ``sigma'`` by the variational
distribution of the paper's eq. (7)-(8), written in the VE convention the paper
uses (``x0_bar = V^T D(x, sigma)``, ``eps_bar = (x_bar - x0_bar) / sigma``,
``b_i = sigma_y / s_i``):

* unmeasured (``s_i = 0``): ``x0_bar + sqrt(1 - eta^2) sigma' eps_bar + eta sigma' z``;
* ``sigma' < b_i`` (less noisy than y): ``x0_bar + sqrt(1 - eta^2) sigma' (y_bar - x0_bar) / b_i + eta sigma' z``;
* ``sigma' > b_i`` (noisier than y): ``eta_b y_bar + (1 - eta_b) x0_bar + sqrt(sigma'^2 - eta_b^2 b_i^2) z``;

and the start ``x_bar_T = y_bar + sqrt(sigma_T^2 - b_i^2) z`` where ``s_i sigma_T > sigma_y``,
``sigma_T z`` elsewhere. Paper defaults: ``eta = 0.85``, ``eta_b = 1``. The unmeasured
subspace is updated in the original coordinates and the measured coordinates are
replaced through ``V`` (thin SVD), so no ``d x d`` basis is formed.

Needs an operator with an SVD of its matrix on flattened tensors: ``operator.svd()``
returning ``(U (m, k), S (k,), V (d, k))`` (``MatrixOperator`` has one). ``sigma_y = 0``
is handled (every step with ``sigma' > 0`` is then in the third case).
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.priors.base import Prior
from invsolve.operators.spectral import SpectralBasis, spectral_decomposition
from invsolve.samplers._common import Callback, require_gaussian_noise, require_linear, start
from invsolve.samplers.declaration import Need, RHO, SamplerDeclaration, UNIT
from invsolve.samplers.output import SamplerOutput


def ddrm_init(y_bar, b, sigma_T: float, V: SpectralBasis, noise_full, noise_k) -> torch.Tensor:
    """Start of DDRM (flattened): ``sigma_T z`` with the measured coordinates drawn around ``y_bar``."""
    x = sigma_T * noise_full
    xv = V.project(x)
    measured = b < sigma_T
    xb = torch.where(measured, y_bar + (sigma_T**2 - b.square()).clamp_min(0).sqrt() * noise_k, xv)
    return x + V.embed(xb - xv)


def ddrm_step(x, x0, y_bar, b, V: SpectralBasis, sigma: float, sigma_next: float, *, eta: float, eta_b: float,
              noise_full, noise_k) -> torch.Tensor:
    """One DDRM transition ``sigma -> sigma_next`` (eq. 7-8) on flattened ``x`` with denoised ``x0``."""
    eps = (x - x0) / sigma
    x_c = x0 + ((1 - eta**2) ** 0.5 * sigma_next) * eps + (eta * sigma_next) * noise_full
    xb_c = V.project(x_c)
    x0b = V.project(x0)
    before = b < sigma_next  # noisier than y
    after = b > sigma_next  # less noisy than y
    b_safe = torch.where(after, b, torch.ones_like(b))
    xb_after = x0b + ((1 - eta**2) ** 0.5 * sigma_next) * (y_bar - x0b) / b_safe + (eta * sigma_next) * noise_k
    xb_before = eta_b * y_bar + (1 - eta_b) * x0b + (sigma_next**2 - (eta_b * b).square()).clamp_min(0).sqrt() * noise_k
    xb = torch.where(before, xb_before, torch.where(after, xb_after, xb_c))
    return x_c + V.embed(xb - xb_c)


def ddrm(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
         generator: torch.Generator, callback: Callback | None = None, eta: float = 0.85, eta_b: float = 1.0,
         rho: float = 7.0) -> SamplerOutput:
    """DDRM posterior samples, shape ``(n_samples, B, *x_shape)``; one denoiser call per step.

    Args:
        eta: stochasticity ``eta`` of the unmeasured / less-noisy-than-y coordinates (paper: 0.85).
        eta_b: weight ``eta_b`` of ``y_bar`` in the noisier-than-y coordinates (paper: 1).
    """
    op = require_linear(measurement, "DDRM")
    sigma_y = require_gaussian_noise(measurement, "DDRM")
    if not (0 <= eta <= 1 and 0 <= eta_b <= 1):
        raise ValueError(f"eta and eta_b must lie in [0, 1], got {eta}, {eta_b}")
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    y = measurement.y
    U, S, V = spectral_decomposition(op, like=y)
    N, (d, k) = run.n_items, V.shape
    y_bar = (U.project(y.reshape(run.batch, -1)) / S).repeat(n_samples, 1)  # item s * B + b
    b = sigma_y / S
    x = ddrm_init(y_bar, b, run.sigmas[0], V, run.noise((N, d)), run.noise((N, k)))
    for i, sigma, sigma_next in run.transitions():
        with torch.no_grad():
            x0 = prior.denoise(x.reshape(N, *prior.shape), sigma).reshape(N, d)
        x = ddrm_step(x, x0, y_bar, b, V, sigma, sigma_next, eta=eta, eta_b=eta_b, noise_full=run.noise((N, d)),
                      noise_k=run.noise((N, k)))
        run.report(i, sigma, x.reshape(N, *prior.shape), x0.reshape(N, *prior.shape))
    return run.output(x.reshape(N, *prior.shape), nfe=run.n_steps, eta=eta, eta_b=eta_b)


DECLARATION = SamplerDeclaration("ddrm", ddrm, default_steps=20, needs={Need.LINEAR, Need.SVD, Need.GAUSSIAN_NOISE},
                                 label="DDRM", demo_position=4, ranges={"eta": UNIT, "eta_b": UNIT, "rho": RHO})
