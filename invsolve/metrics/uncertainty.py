"""Calibration of posterior samples: weighted marginal quantiles and interval coverage."""

from __future__ import annotations

import torch


def weighted_quantile(samples: torch.Tensor, q: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-coordinate ``q``-quantile of ``samples (N, ...)`` under normalised ``weights (N,)`` (uniform if None).

    The lower quantile of the weighted empirical distribution: the smallest sample value whose
    cumulative weight reaches ``q``.
    """
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    n = samples.shape[0]
    if weights is None:
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64, device=samples.device)
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    flat = samples.reshape(n, -1)
    order = flat.argsort(dim=0)
    cdf = weights.to(torch.float64)[order].cumsum(dim=0)
    idx = (cdf < q - 1e-12).sum(dim=0).clamp_max(n - 1)
    return flat.gather(0, order.gather(0, idx[None]))[0].reshape(samples.shape[1:])


def interval_coverage(truth: torch.Tensor, samples: torch.Tensor, weights: torch.Tensor | None = None,
                      level: float = 0.9) -> float:
    """Fraction of the coordinates of ``truth`` inside the central ``level`` marginal interval of ``samples``."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if tuple(truth.shape) != tuple(samples.shape[1:]):
        raise ValueError(f"truth has shape {tuple(truth.shape)}, samples describe {tuple(samples.shape[1:])}")
    tail = (1 - level) / 2
    lo = weighted_quantile(samples, tail, weights)
    hi = weighted_quantile(samples, 1 - tail, weights)
    return float(((truth >= lo) & (truth <= hi)).double().mean())


def iid_interval_coverage(n: int, level: float = 0.9, trials: int = 20000, seed: int = 0) -> float:
    """Coverage :func:`interval_coverage` scores for an *exact* sampler with ``n`` i.i.d. draws.

    With few draws the empirical quantile interval is narrower than the true one; this is the expected
    probability that a fresh draw lands inside it (by simulation on uniforms; the value is the same for
    every continuous distribution).
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, trials, generator=g, dtype=torch.float64)
    truth = torch.rand(trials, generator=g, dtype=torch.float64)
    return interval_coverage(truth, u, level=level)


def randomized_pit(truth: torch.Tensor, samples: torch.Tensor, weights: torch.Tensor | None = None, *,
                   generator: torch.Generator) -> torch.Tensor:
    """The randomised probability integral transform of each coordinate of ``truth`` under ``samples (N, ...)``.

    For ``N`` equally weighted draws this is simulation-based calibration's rank statistic (Talts, Betancourt,
    Simpson, Vehtari & Gelman, 2018): with ``r`` draws below the truth, ``u = (r + U) / (N + 1)``, ``U ~ U(0, 1)``,
    exactly uniform on ``(0, 1)`` when the draws and the truth are i.i.d. from the same distribution (whatever
    ``N``). Weighted draws (normalised ``weights (N,)``) replace ``r`` by ``N`` times the weight below the truth.
    Ties (e.g. a coordinate all draws agree on) are split at random like the rank.
    """
    n = samples.shape[0]
    if tuple(truth.shape) != tuple(samples.shape[1:]):
        raise ValueError(f"truth has shape {tuple(truth.shape)}, samples describe {tuple(samples.shape[1:])}")
    w = (torch.full((n,), 1.0 / n, dtype=torch.float64, device=samples.device) if weights is None
         else weights.to(torch.float64))
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(w.shape)}")
    shape = (n,) + (1,) * truth.dim()
    s, t = samples.double(), truth.double()[None]
    below = ((s < t).double() * w.reshape(shape)).sum(0)
    tied = ((s == t).double() * w.reshape(shape)).sum(0)
    u = torch.rand(truth.shape, generator=generator, dtype=torch.float64, device=samples.device)
    return (n * (below + u * tied) + u) / (n + 1)


def central_coverage(pit: torch.Tensor, level: float) -> float:
    """Fraction of ``pit`` values inside the central ``level`` band ``((1 - level) / 2, (1 + level) / 2)``.

    With :func:`randomized_pit` this is the coverage of the central ``level`` interval, equal to ``level`` in
    expectation for an exact sampler at any number of draws.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    tail = (1 - level) / 2
    return float(((pit > tail) & (pit < 1 - tail)).double().mean())


def pit_histogram(pit: torch.Tensor, bins: int = 20) -> torch.Tensor:
    """Counts of ``pit`` values in ``bins`` equal bins of ``[0, 1]`` (the rank histogram), float64."""
    return torch.histc(pit.double().flatten(), bins=bins, min=0.0, max=1.0)


def uniformity_distance(counts: torch.Tensor) -> float:
    """Total-variation distance ``1/2 sum |p_i - 1/K|`` of a histogram from the uniform one (0 = flat, ->1 = a spike)."""
    p = counts.double() / counts.sum()
    return float(0.5 * (p - 1.0 / p.numel()).abs().sum())


def standardized_errors(truth: torch.Tensor, samples: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(truth - mean) / std`` per coordinate, with the (weighted) sample mean and std of ``samples (N, ...)``.

    Calibrated std maps give values of unit spread: ``std(z) ~ 1`` (slightly more with few draws, the
    t-distribution's ``sqrt((N + 1) / N)`` spread for Gaussian marginals) and ``P(|z| < 1.645) ~ 0.9``.
    """
    n = samples.shape[0]
    w = (torch.full((n,), 1.0 / n, dtype=torch.float64, device=samples.device) if weights is None
         else weights.to(torch.float64)).reshape((n,) + (1,) * truth.dim())
    s = samples.double()
    mean = (w * s).sum(0)
    std = (w * (s - mean).square()).sum(0).sqrt()
    return (truth.double() - mean) / std.clamp_min(1e-12)
