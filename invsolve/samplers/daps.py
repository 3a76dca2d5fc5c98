"""Decoupled annealing posterior sampling (DAPS; Zhang, Chen, Zhu, Zhang, Yue, Bouman, CVPR 2025, arXiv:2407.01521).

DAPS anneals a chain ``x_{sigma_0} -> x_{sigma_1} -> ... -> x_0`` in which every step goes through a clean
image, so no error of one step is carried in the next step's noisy iterate (paper Alg. 1):

1. ``x0_hat``: the prior's denoised estimate ``D(x_t, sigma_t)`` (``ode_steps=1``, Tweedie's mean: the
   moment-matched centre of ``p(x_0 | x_t)``), or the end of ``ode_steps`` DDIM steps of the probability-flow
   ODE from ``sigma_t`` (the paper's choice, 5 steps in DAPS-1K): a draw-like point of the prior rather than
   a mean between its modes;
2. ``x_0 ~ p(x_0 | x_t, y) ∝ N(x_0; x0_hat, r_t^2 I) p(y | x_0)`` (paper eq. 8-9);
3. ``x_{t+1} = x_0 + sigma_{t+1} n`` (paper eq. 10).

If step 2 were exact, every step would carry the posterior's noisy marginal ``p(x_t | y)`` to ``p(x_{t+1} | y)``
(paper Prop. 1): DAPS is exact for any prior whose ``p(x_0 | x_t)`` is Gaussian with covariance ``r_t^2 I``. Two
choices make it so here, and none is hand-set:

* ``r_t^2 = Var[x_0 | x_t]`` from the prior (:mod:`invsolve.samplers.posterior_variance`; ``data_variance="auto"``
  estimates it from the denoiser's Jacobian, Tweedie's covariance), where the paper uses the schedule ``r_t =
  sigma_t``. With it, isotropic Gaussian priors are sampled exactly at any step count (tested);
* for linear operators with Gaussian noise the Gaussian conditional of step 2 is **sampled exactly**, where the
  paper runs Langevin dynamics (an approximate, step-size-tuned inner loop): in the operator's SVD basis
  (:meth:`~invsolve.samplers.spectral_likelihood.SpectralLikelihood.tilted_sample`, ``conditional="svd"``), or by
  perturb-and-MAP (Papandreou & Yuille, 2010) with conjugate gradients, ``(I + (r^2 / sigma_y^2) A^T A) x_0 =
  x0_hat + r e_1 + (r^2 / sigma_y^2) A^T (y + e_2)``, ``e_1 ~ N(0, I)``, ``e_2`` the measurement noise
  (``conditional="cg"``; any linear operator, no SVD; exact up to the CG tolerance).

Cost: one network call per step and sample (plus, with ``"auto"``, one call with its backward pass on one or
two rows per step); samples are independent, so they calibrate without weights.
"""

from __future__ import annotations

import math

import torch

from invsolve.measurement import Measurement
from invsolve.operators.base import conjugate_gradient
from invsolve.priors.base import Prior
from invsolve._validation import positive_int
from invsolve.samplers._common import Callback, randn, require_gaussian_noise, require_linear, start
from invsolve.samplers.declaration import Need, RHO, Range, SamplerDeclaration
from invsolve.samplers.edm import edm_sigmas
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.posterior_variance import DATA_VARIANCE, posterior_variance
from invsolve.samplers.spectral_likelihood import SpectralLikelihood

CONDITIONALS = ("auto", "svd", "cg")

#: ``conditional="auto"`` uses the SVD for images of at most this many pixels, conjugate gradients above.
SVD_MAX_PIXELS = 16384


def sample_conditional_cg(measurement: Measurement, centre: torch.Tensor, r2: float, generator: torch.Generator,
                          *, max_iter: int, tol: float) -> torch.Tensor:
    """A draw from ``N(x; centre, r2 I) N(y; A x, sigma_y^2 I)`` by perturb-and-MAP with conjugate gradients."""
    op, noise = measurement.operator, measurement.noise
    if r2 == 0:
        return centre
    ratio = r2 / noise.sigma**2
    y = measurement.y.expand(centre.shape[0], *measurement.y.shape[1:])
    perturbed_y = noise.sample(y, generator)  # y + e_2, a fresh e_2 per row
    rhs = centre + math.sqrt(r2) * randn(centre.shape, generator, centre.dtype, centre.device) \
        + ratio * op.A_adjoint(perturbed_y)
    return conjugate_gradient(lambda v: v + ratio * op.A_adjoint(op.A(v)), rhs, x0=centre, max_iter=max_iter, tol=tol)


def ode_estimate(prior: Prior, x: torch.Tensor, sigma: float, ode_steps: int, rho: float) -> torch.Tensor:
    """``x0_hat``: ``D(x, sigma)`` for one step, else DDIM (probability-flow ODE) from ``sigma`` over ``ode_steps``."""
    with torch.no_grad():
        if ode_steps == 1 or sigma <= prior.sigma_min:
            return prior.denoise(x, sigma)
        levels = [float(s) for s in edm_sigmas(ode_steps, prior.sigma_min, sigma, rho)[:-1]]
        for level, following in zip(levels, levels[1:] + [0.0]):
            denoised = prior.denoise(x, level)
            x = denoised + (following / level) * (x - denoised)
        return x


def daps(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
         generator: torch.Generator, callback: Callback | None = None, data_variance: float | str = "auto",
         ode_steps: int = 1, conditional: str = "auto", cg_max_iter: int = 50, cg_tol: float = 1e-5,
         rho: float = 7.0) -> SamplerOutput:
    """DAPS posterior samples ``(n_samples, B, *x_shape)``, independent and unweighted.

    Args:
        steps: annealing levels (one network call each).
        data_variance: ``r_t^2``: ``"auto"`` (default, from the denoiser) or ``c`` for ``c sigma^2 / (c + sigma^2)``.
        ode_steps: network calls per level for ``x0_hat`` (1 = Tweedie's mean; more = a DDIM ODE solve).
        conditional: ``"svd"`` (exact, uses ``operator.svd()``), ``"cg"`` (exact up to ``cg_tol``, any linear
            operator) or ``"auto"`` (SVD up to 16384 pixels).
        cg_max_iter, cg_tol: the conjugate-gradient solve of ``conditional="cg"``.
    """
    require_linear(measurement, "DAPS")
    sigma_y = require_gaussian_noise(measurement, "DAPS")
    if not sigma_y > 0:
        raise ValueError(f"DAPS samples p(x_0 | x_t, y), which needs sigma_y > 0; got {sigma_y}")
    if conditional not in CONDITIONALS:
        raise ValueError(f"conditional must be one of {CONDITIONALS}, got {conditional!r}")
    positive_int(cg_max_iter, "cg_max_iter")
    positive_int(ode_steps, "ode_steps")
    r2_of = posterior_variance(data_variance, prior, generator)
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    if conditional == "auto":
        conditional = "svd" if math.prod(prior.shape) <= SVD_MAX_PIXELS else "cg"
    spectral = SpectralLikelihood.from_measurement(measurement, "DAPS") if conditional == "svd" else None
    n = run.n_items
    x = run.initial_noise()
    x0 = x
    r2_trace = []
    for i, sigma, sigma_next in run.transitions():
        r2_trace.append(r2_of(x, sigma))
        centre = ode_estimate(prior, x, sigma, ode_steps, rho)
        if spectral is not None:
            flat = centre.reshape(n, -1)
            x0, _ = spectral.tilted_sample(flat, r2_trace[-1], 1.0, run.noise().reshape(n, -1),
                                           run.noise((n, spectral.s.shape[0])))
            x0 = x0.reshape(centre.shape)
        else:
            x0 = sample_conditional_cg(run.measurement, centre, r2_trace[-1], generator, max_iter=cg_max_iter,
                                       tol=cg_tol)
        x = x0 + sigma_next * run.noise() if sigma_next > 0 else x0
        run.report(i, sigma, x, centre, r2=r2_trace[-1])
    return run.output(x0, nfe=run.n_steps * ode_steps, conditional=conditional, data_variance=data_variance,
                      posterior_variance=torch.tensor(r2_trace, dtype=torch.float64))


DECLARATION = SamplerDeclaration("daps", daps, default_steps=100, needs={Need.LINEAR, Need.GAUSSIAN_NOISE,
                                                                         Need.EXACT_MODEL},
                                 label="DAPS", ranges={"data_variance": DATA_VARIANCE, "rho": RHO,
                                                       "ode_steps": Range(1, 1000, integer=True),
                                                       "cg_max_iter": Range(1, 10_000, integer=True),
                                                       "cg_tol": Range(0, 1, open_high=True)})
