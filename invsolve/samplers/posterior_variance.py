"""The prior's posterior variance ``Var[x_0 | x_sigma]``, the nuisance parameter of the Gaussian reverse kernels.

AFES / FKC (:func:`invsolve.samplers.fk_likelihood.reverse_kernel`), TDS (its twist), PiGDM (``r_t^2``) and
DAPS (its ``p(x_0 | x_t)``) all stand in ``N(D(x), r I)`` for the denoising posterior ``p(x_0 | x_sigma)``. Two
ways to get ``r``:

* from a number ``c`` (``data_variance``): ``r = c sigma^2 / (c + sigma^2)``, exact for an isotropic Gaussian
  prior of variance ``c`` (Song et al., 2023, PiGDM, Sec. 3.2);
* ``"auto"``, from the denoiser itself, by Tweedie's second-order identity ``Cov[x_0 | x_sigma] = sigma^2 dD/dx``
  (Efron, 2011; Meng et al., 2021, eq. 5; Boys et al., 2024, eq. 8): the mean per-coordinate posterior variance
  is ``sigma^2 tr(dD/dx) / d``, estimated by Hutchinson's ``v^T (dD/dx) v`` with Rademacher probes ``v`` (one
  vector-Jacobian product) on the current iterates. No hand-set number: the estimate follows the prior's local
  variance at every noise level, and for an isotropic Gaussian prior it equals the first form in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from invsolve.priors.base import Prior
from invsolve.samplers.declaration import Range

#: ``data_variance``: a number >= 0 (the Gaussian stand-in's variance) or ``"auto"`` (estimated from the denoiser).
DATA_VARIANCE = Range(0, math.inf, open_high=True, words=("auto",))

#: Coordinates ``items x d`` the Hutchinson estimate averages over (bounds its relative error to a few percent).
ESTIMATE_COORDINATES = 8192


def gaussian_posterior_variance(data_variance: float, sigma: float) -> float:
    """``c sigma^2 / (c + sigma^2)``: ``Var[x_0 | x_sigma]`` of an isotropic Gaussian prior with variance ``c``."""
    return data_variance * sigma**2 / (data_variance + sigma**2)


def denoiser_posterior_variance(prior: Prior, x: torch.Tensor, sigma: float, generator: torch.Generator, *,
                                coordinates: int = ESTIMATE_COORDINATES) -> float:
    """``sigma^2 tr(dD/dx) / d`` averaged over rows of ``x``, by Hutchinson's estimator (Tweedie's covariance).

    Uses the first ``ceil(coordinates / d)`` rows (at least one) with one Rademacher probe each; the cost is one
    network call with its backward pass on those rows. Clamped at 0 (a negative estimate is noise).
    """
    d = math.prod(x.shape[1:])
    rows = min(x.shape[0], max(1, math.ceil(coordinates / d)))
    with torch.enable_grad():
        xs = x[:rows].detach().requires_grad_(True)
        probe = torch.randint(0, 2, xs.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        (vjp,) = torch.autograd.grad((prior.denoise(xs, sigma) * probe).sum(), xs)
    trace_per_coordinate = float((vjp * probe).double().sum()) / (rows * d)
    return max(0.0, sigma**2 * trace_per_coordinate)


def check_data_variance(data_variance: float | str) -> None:
    if not DATA_VARIANCE.admits(data_variance):
        raise ValueError(f"data_variance must be {DATA_VARIANCE.describe()}, got {data_variance!r}")


def posterior_variance(data_variance: float | str, prior: Prior,
                       generator: torch.Generator) -> Callable[[torch.Tensor, float], float]:
    """``r(x, sigma)``: the posterior variance per coordinate, from ``c`` or estimated from the denoiser (``"auto"``)."""
    check_data_variance(data_variance)
    if data_variance == "auto":
        return lambda x, sigma: denoiser_posterior_variance(prior, x, sigma, generator)
    c = float(data_variance)
    return lambda x, sigma: gaussian_posterior_variance(c, sigma)
