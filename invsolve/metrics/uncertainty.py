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
