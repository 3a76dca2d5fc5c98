"""The approximation-free ensemble sampler (Chen, Ren, Min, Ying, Izzo, 2025, arXiv:2506.03979).

Posterior sampling with a diffusion prior and *no* approximation of ``p(y | x_sigma)``: the
intermediate targets are the prior's diffused marginals tilted by the likelihood evaluated at the
particle, ``q_sigma(x) ∝ p_sigma(x) p(y | x)``, which at ``sigma = 0`` is the posterior. The paper
derives the PDE these targets obey: the reverse diffusion with the extra drift ``-g^2 grad mu_y``
(``mu_y = -log p(y | x)``) plus a reweighting term, simulated by a weighted particle system whose
error it bounds by the score error and the number of particles. The particle
mechanics, the weight rate and both integrators are in :mod:`invsolve.samplers.fk_likelihood`.

* ``variant="sde"``: the guided reverse SDE with the Feynman--Kac weight rate.
* ``variant="ode_langevin"``: probability-flow ODE transport (weights by the likelihood ratio along
  the move) followed by Langevin corrector steps at the new noise level.
* Start: for linear-Gaussian measurements the exact draw from ``N(0, sigma_max^2 I) p(y | x)`` (the
  tilted Gaussian stand-in for ``p_sigma_max``) with its exact normaliser; otherwise prior noise
  importance-weighted by ``p(y | x)``.

Unlike DPS no gradient flows through the network: one denoiser call per particle and step, so the
cost is ``N`` unconditional samples plus the operator work.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, start
from invsolve.samplers.declaration import POSITIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.fk_likelihood import is_linear_gaussian, run_fk_likelihood
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.particles import check_smc_options
from invsolve.samplers.posterior_variance import DATA_VARIANCE

VARIANTS = ("sde", "ode_langevin")


def resolve_integrator(integrator: str, measurement: Measurement) -> str:
    """``"auto"`` -> ``"exact"`` for linear-Gaussian measurements, ``"euler"`` otherwise."""
    if integrator == "auto":
        return "exact" if is_linear_gaussian(measurement) else "euler"
    return integrator


def afes(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 64,
         generator: torch.Generator, callback: Callback | None = None, variant: str = "sde",
         integrator: str = "auto", corrector_steps: int = 1, corrector_step: float = 0.1,
         resampling: str = "systematic", ess_threshold: float = 0.5, chunk: int | None = None,
         hutchinson_probes: int = 1, data_variance: float | str = "auto", rho: float = 7.0) -> SamplerOutput:
    """Weighted posterior particles ``(n_samples, B, *x_shape)`` with ``log_weights (n_samples, B)``.

    Args:
        n_samples: particles per measurement (one batch through the network; see ``chunk``).
        variant: ``"sde"`` or ``"ode_langevin"`` (see the module docstring).
        integrator: ``"exact"`` (linear operator + Gaussian noise; uses ``operator.svd()``), ``"euler"``
            (any differentiable operator / noise model), or ``"auto"``.
        corrector_steps / corrector_step: Langevin steps per noise level of ``"ode_langevin"`` and their
            size as a fraction of ``sigma^2``.
        resampling / ess_threshold: ``"systematic"`` or ``"multinomial"``, when ``ESS <= threshold * N``.
        chunk: largest batch passed to the network at once (memory bound); None = all particles.
        hutchinson_probes: probes of the Laplacian estimate (``"euler"`` with non-Gaussian or nonlinear models).
        data_variance: the unguided reverse kernel's ``Var[x_0 | x_sigma]``
            (:func:`invsolve.samplers.fk_likelihood.reverse_kernel`): ``"auto"`` (default) estimates it from
            the denoiser's Jacobian at every step (:mod:`invsolve.samplers.posterior_variance`); a number ``c``
            gives ``c sigma^2 / (c + sigma^2)``.

    ``diagnostics`` holds the ESS trace, the resampling count and ``log_evidence`` (the estimate of
    ``log p(y)``; unbiased for ``p(y)`` with isotropic Gaussian priors of variance ``data_variance = c``,
    otherwise biased by the kernel-variance mismatch measured in :mod:`invsolve.samplers.fk_likelihood`).

    With thousands of measured directions (64x64 CT / MRI) the weights collapse to a single particle
    at CPU-scale ``N``; see ``experiments/results/smc_images.md``.
    """
    check_smc_options(n_samples, resampling, ess_threshold, chunk)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    sig = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples,
                generator=generator).sigmas
    return run_fk_likelihood(
        measurement, prior, sig, [1.0] * len(sig), n_particles=n_samples, generator=generator,
        integrator=resolve_integrator(integrator, measurement), predictor="sde" if variant == "sde" else "ode",
        corrector_steps=corrector_steps if variant == "ode_langevin" else 0, corrector_step=corrector_step,
        resampling=resampling, ess_threshold=ess_threshold, chunk=chunk, hutchinson_probes=hutchinson_probes,
        data_variance=data_variance,
        callback=callback, sampler="AFES",
    )


DECLARATION = SamplerDeclaration("afes", afes, default_steps=100, label="AFES", ranges={
    "corrector_steps": Range(0, 1000, integer=True), "corrector_step": POSITIVE, "ess_threshold": UNIT,
    "chunk": Range(1, 2**31, integer=True), "hutchinson_probes": Range(1, 1000, integer=True),
    "data_variance": DATA_VARIANCE, "rho": RHO})
