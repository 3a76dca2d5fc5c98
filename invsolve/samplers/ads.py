"""Active diffusion subsampling (ADS; Nolan, Stevens, van Sloun et al., TMLR 2025, arXiv:2406.14388).

Chooses which measurements to acquire while the reverse diffusion runs. ``N`` particles follow DPS
(:mod:`invsolve.samplers.dps`) on the data acquired so far. At each scheduled acquisition step the
particles' denoised estimates ``x0_hat_i`` are mapped to measurement space, and every candidate ``a``
not yet acquired (a k-space column, a pixel) is scored by the particle-mixture entropy surrogate of
the paper (Section 4, the posterior over ``y^a`` approximated by a mixture of Gaussians of width
``sigma_e`` centred at the particles' predictions)::

    H(a) = sum_i logsumexp_j ||y_i^a - y_j^a||^2 / (2 sigma_e^2)

computed in log-space (:func:`entropy_scores`, never a raw ``exp``). The best-scoring candidate is
acquired (greedily, several per step when the budget exceeds the window), the measurement is
enlarged, and the diffusion continues with the new data from the next step. A simpler criterion,
``"variance"`` (sum over the candidate's values of the particles' variance: the entropy of a
Gaussian fit per value, up to monotone maps), is available. At the end a hard data-consistency
step ``x <- x + A^T (y - A x)`` puts the acquired data back into every particle: exactly for
inpainting and complex images under single-coil Cartesian MRI (``A A^T = I`` on the acquired
data); for real images through ``RealToComplex`` (whose k-space cannot match noisy complex data
exactly) and multi-coil data it is one unit Landweber step, which shrinks the residual.

Pairwise distances for all candidates and particle pairs are one batched operation
(``|v_i|^2 + |v_j|^2 - 2 <v_i, v_j>`` with one ``einsum``), so selection costs about
``K N^2 D`` multiply-adds per acquisition step, little beside the network.
"""

from __future__ import annotations

import math
import time
import torch

from invsolve.acquisition import ActiveMeasurement
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, check_generator, check_n_samples, randn, replicate
from invsolve.samplers.declaration import NONNEGATIVE, Need, POSITIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.dps import dps_guidance, dps_step
from invsolve.samplers.edm import schedule
from invsolve.samplers.output import SamplerOutput, StepInfo


def pairwise_sq_distances(values: torch.Tensor) -> torch.Tensor:
    """``(N, K, D)`` -> ``(K, N, N)``: ``||v_i^a - v_j^a||^2`` for every candidate ``a``, one batched product."""
    sq = values.square().sum(-1).transpose(0, 1)  # (K, N)
    gram = torch.einsum("ikd,jkd->kij", values, values)
    return (sq[:, :, None] + sq[:, None, :] - 2 * gram).clamp_min(0)


def entropy_scores(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """The particle-mixture entropy surrogate per candidate, ``(K,)``, from predictions ``(N, K, D)``."""
    if values.shape[0] < 2:
        raise ValueError("the entropy surrogate needs at least 2 particles")
    d2 = pairwise_sq_distances(values.double())
    return torch.logsumexp(d2 / (2 * sigma**2), dim=2).sum(dim=1)


def variance_scores(values: torch.Tensor) -> torch.Tensor:
    """Sum over a candidate's values of the particles' variance, ``(K,)``."""
    return values.double().var(dim=0, unbiased=False).sum(-1)


def acquisition_steps(n_steps: int, window: tuple[float, float], budget: int) -> list[int]:
    """How many candidates to acquire at each step: ``budget`` spread evenly over the window of steps.

    ``window = (start, stop)`` are fractions of the ``n_steps`` reverse steps; step ``i`` of the
    window gets ``counts[i]`` acquisitions (more than one only when the budget exceeds the window).
    """
    start, stop = window
    if not 0 <= start < stop <= 1:
        raise ValueError(f"window must satisfy 0 <= start < stop <= 1, got {window!r}")
    first = int(math.floor(start * n_steps))
    slots = list(range(first, max(first + 1, min(n_steps, int(math.ceil(stop * n_steps))))))
    counts = [0] * n_steps
    for k in range(budget):
        counts[slots[(k * len(slots)) // budget]] += 1
    return counts


def ads(measurement: ActiveMeasurement, prior: Prior, *, budget: int | None = None, steps: int | None = 100,
        sigmas=None, n_samples: int = 16, generator: torch.Generator, callback: Callback | None = None,
        window: tuple[float, float] = (0.0, 0.5), criterion: str = "entropy", entropy_sigma: float | None = None,
        zeta: float = 1.0, eta: float = 1.0, rho: float = 7.0, hard_data_consistency: bool = True) -> SamplerOutput:
    """ADS: ``n_samples`` DPS particles that acquire ``budget`` more candidates during the reverse diffusion.

    Args:
        measurement: the fully acquirable data and the initial selection (:class:`ActiveMeasurement`).
        budget: number of candidates to acquire (beyond ``measurement.initial``); default: the measurement's own
            ``budget``.
        window: fractions ``(start, stop)`` of the reverse steps within which acquisitions happen
            (the paper acquires early, while the particles still disagree about coarse structure).
        criterion: ``"entropy"`` (the paper's surrogate) or ``"variance"``.
        entropy_sigma: width ``sigma_e`` of the mixture components (default: the noise level ``sigma_y``
            of the measurement, or 1 when that is 0).
        zeta, eta, rho: DPS step size, DDIM stochasticity, EDM schedule exponent (as :func:`dps`).
        hard_data_consistency: finish with ``x <- x + A^T (y - A x)`` on the final data.

    Returns ``samples (n_samples, 1, *x_shape)``; ``diagnostics["acquisition_order"]`` lists
    ``(step, candidate)`` in acquisition order, ``diagnostics["selected"]`` is the final selection,
    ``diagnostics["selection_seconds"]`` (scoring and choosing), ``["measurement_update_seconds"]``
    (building the enlarged measurement) and ``["total_seconds"]`` split the time.
    """
    if not isinstance(measurement, ActiveMeasurement):
        raise TypeError(f"measurement must be an ActiveMeasurement, got {type(measurement).__name__}")
    check_generator(generator)
    check_n_samples(n_samples)
    if n_samples < 2:
        raise ValueError("ADS needs at least 2 particles to score candidates")
    if criterion not in ("entropy", "variance"):
        raise ValueError(f"criterion must be 'entropy' or 'variance', got {criterion!r}")
    acquisition = measurement.acquisition
    selected = measurement.initial.clone()
    available = int((~selected).sum())
    if budget is None:
        budget = measurement.budget
    if budget is None:
        raise ValueError("give budget=... (candidates to acquire) or an ActiveMeasurement with a budget")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= available:
        raise ValueError(f"budget must be an integer in [0, {available}] (candidates not yet acquired), got {budget!r}")
    current = measurement.measurement(selected)
    if entropy_sigma is None:
        entropy_sigma = current.sigma_y or 1.0
    if not entropy_sigma > 0:
        raise ValueError(f"entropy_sigma must be > 0, got {entropy_sigma}")
    sig = [float(s) for s in schedule(prior, steps, sigmas, rho)]
    n = len(sig) - 1
    counts = acquisition_steps(n, window, budget)
    y = current.y
    x = sig[0] * randn((n_samples, *prior.shape), generator, y.dtype, y.device)
    meas = replicate(current, n_samples)
    order: list[tuple[int, int]] = []
    start, selection_seconds, update_seconds = time.perf_counter(), 0.0, 0.0
    for i in range(n):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0, grad, norm = dps_guidance(meas, prior, x, sigma)
        if counts[i]:
            tick = time.perf_counter()
            with torch.no_grad():
                values = acquisition.values(x0)
                scores = entropy_scores(values, entropy_sigma) if criterion == "entropy" else variance_scores(values)
                scores = scores.masked_fill(selected.to(scores.device), -math.inf)
                picks = torch.topk(scores, counts[i]).indices.cpu()
            selected[picks] = True
            order += [(i, int(p)) for p in picks]
            selection_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            meas = replicate(measurement.measurement(selected), n_samples)
            update_seconds += time.perf_counter() - tick
        noise = randn(x.shape, generator, x.dtype, x.device) if eta > 0 and sigma_next > 0 else None
        x = dps_step(x.detach(), x0, grad, sigma, sigma_next, zeta=zeta, eta=eta, step_scaling="vp", noise=noise)
        if callback is not None:
            callback(StepInfo(step=i, total_steps=n, sigma=sigma, x=x, denoised=x0,
                              extra={"residual_norm": norm, "acquired": int(selected.sum())}))
    final = measurement.measurement(selected)
    x = x.detach()
    if hard_data_consistency:
        with torch.no_grad():
            x = x + final.operator.A_adjoint(final.y - final.operator.A(x))
    return SamplerOutput(
        samples=x[:, None], nfe=n,
        diagnostics={"acquisition_order": order, "selected": selected, "criterion": criterion,
                     "entropy_sigma": float(entropy_sigma), "selection_seconds": selection_seconds,
                     "measurement_update_seconds": update_seconds,
                     "total_seconds": time.perf_counter() - start, "final_measurement": final},
    )


DECLARATION = SamplerDeclaration("ads", ads, default_steps=100, needs={Need.ACTIVE}, label="ADS", min_samples=2,
                                 ranges={"budget": Range(0, 2**31, integer=True), "entropy_sigma": POSITIVE,
                                         "zeta": NONNEGATIVE, "eta": UNIT, "rho": RHO})
