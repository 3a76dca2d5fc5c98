"""Feynman--Kac correctors for an annealed likelihood (Skreta, Akhound-Sadegh, Ohanesian, Bondesan,
Aspuru-Guzik, Doucet, Brekelmans, Tong, Neklyudov, ICML 2025, arXiv:2503.02819).

FKC turn a diffusion sampler for a sequence of *modified* targets into an exact one by weighting
particles with the Feynman--Kac rate of the gap between the simulated SDE and the targets' evolution,
and resampling (systematic, every step in the authors' code, with mean-centred log-increments).
Here the modification is a likelihood tempered along the reverse process,

    ``q_k(x) ∝ p_{sigma_k}(x) p(y | x)^{beta_k}``,  ``beta_0 = 0`` (pure prior noise) ``-> beta_K = beta_final``,

so particles start from the prior, the likelihood is switched on gradually, and ``beta_final < 1``
gives the tempered posterior ``p(x) p(y | x)^beta``. The time derivative of ``beta`` adds the term
``-(d beta / d tau) U`` to the rate (see :mod:`invsolve.samplers.fk_likelihood`, which both this and
:mod:`invsolve.samplers.afes` use; with ``beta == 1`` and a tilted Gaussian start it is AFES).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from invsolve.measurement import Measurement
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, start
from invsolve.samplers.afes import resolve_integrator
from invsolve.samplers.declaration import POSITIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.fk_likelihood import run_fk_likelihood
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.particles import check_smc_options
from invsolve.samplers.posterior_variance import DATA_VARIANCE


def linear_annealing(n_levels: int, beta_final: float, warmup: float = 0.0) -> list[float]:
    """``beta_k = beta_final * clip((k / (n_levels - 1) - warmup) / (1 - warmup), 0, 1)`` for ``k = 0..n_levels-1``."""
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must lie in [0, 1), got {warmup}")
    last = max(n_levels - 1, 1)
    return [beta_final * min(1.0, max(0.0, (k / last - warmup) / (1 - warmup))) for k in range(n_levels)]


def fkc(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 64,
        generator: torch.Generator, callback: Callback | None = None, beta_final: float = 1.0, warmup: float = 0.0,
        exponents: Sequence[float] | None = None, integrator: str = "auto", resampling: str = "systematic",
        ess_threshold: float = 1.0, chunk: int | None = None, hutchinson_probes: int = 1,
        data_variance: float | str = "auto", cess_target: float | None = None, moves: int = 2,
        move_step: float = 0.1, rho: float = 7.0) -> SamplerOutput:
    """Weighted particles ``(n_samples, B, *x_shape)`` for ``p(x) p(y | x)^beta_final``.

    Args:
        beta_final: the final likelihood exponent (1 = the posterior; < 1 tempered).
        warmup: fraction of the steps run on the prior alone before the linear ramp of ``beta`` starts.
        exponents: explicit likelihood exponents ``beta_k``, one per noise level (``steps + 1`` values),
            instead of the linear ramp.
        ess_threshold: 1.0 (default) resamples at every step, as in the authors' code.
        cess_target: adaptive tempering (:mod:`invsolve.samplers.tempering`): every rise of ``beta`` is split into
            increments keeping the conditional ESS above ``cess_target * N``, each followed by resampling and
            ``moves`` MALA / Langevin moves (initial size ``move_step * sigma^2``); the extra network calls
            count in ``nfe``. None (default) = the fixed schedule.

    Other arguments as in :func:`invsolve.samplers.afes.afes`.
    """
    check_smc_options(n_samples, resampling, ess_threshold, chunk)
    if not 0 < beta_final < math.inf:
        raise ValueError(f"beta_final must be a finite number > 0, got {beta_final}")
    sig = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples,
                generator=generator).sigmas
    beta_seq = list(exponents) if exponents is not None else linear_annealing(len(sig), beta_final, warmup)
    return run_fk_likelihood(
        measurement, prior, sig, beta_seq, n_particles=n_samples, generator=generator,
        integrator=resolve_integrator(integrator, measurement), predictor="sde", corrector_steps=0,
        corrector_step=0.1, resampling=resampling, ess_threshold=ess_threshold, chunk=chunk,
        hutchinson_probes=hutchinson_probes,
        data_variance=data_variance, callback=callback, sampler="FKC", cess_target=cess_target, moves=moves,
        move_step=move_step,
    )


DECLARATION = SamplerDeclaration("fkc", fkc, default_steps=100, label="FKC", ranges={
    "beta_final": POSITIVE, "warmup": Range(0, 1, open_high=True), "ess_threshold": UNIT,
    "chunk": Range(1, 2**31, integer=True), "hutchinson_probes": Range(1, 1000, integer=True),
    "data_variance": DATA_VARIANCE, "cess_target": Range(0, 1, open_low=True, open_high=True),
    "moves": Range(0, 1000, integer=True), "move_step": POSITIVE, "rho": RHO})
