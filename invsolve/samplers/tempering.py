"""Adaptive likelihood tempering and resample-move rejuvenation for the Feynman--Kac particle samplers.

Raising the likelihood exponent from ``beta`` to ``beta'`` at fixed particles multiplies their weights by
``p(y | x)^(beta' - beta)``. With thousands of measured directions one fixed increment can leave one particle
standing, so the increment is chosen per step (Jasra, Stephens, Doucet & Tsagaris, 2011; Zhou, Johansen &
Aston, 2016): the largest ``beta'`` whose **conditional ESS**

    ``CESS = N (sum_i W_i w_i)^2 / sum_i W_i w_i^2``,  ``w_i = p(y | x_i)^(beta' - beta)``

stays above ``target * N`` (found by bisection; it measures the increment alone, whatever the current
weights). Each increment is followed by resampling and ``moves`` Markov moves that leave the current target
``q(x) ∝ p_sigma(x) p(y | x)^beta'`` invariant (resample-move; Gilks & Berzuini, 2001), which restore the
diversity resampling removes:

* **MALA** (Roberts & Tweedie, 1996) when the prior has ``log_prob(x, sigma)`` (Gaussian and GMM priors): the
  Langevin proposal ``x' = x + delta grad log q(x) + sqrt(2 delta) xi`` accepted with the Metropolis-Hastings
  ratio, so the move is exact; ``delta`` adapts to keep the acceptance near 0.57 (the optimal MALA rate);
* otherwise (network priors, whose density is not available) the unadjusted split Langevin step of
  :func:`invsolve.samplers.fk_likelihood` (prior score step, then the exact likelihood flow), invariant up to
  its discretisation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

MALA_TARGET_ACCEPTANCE = 0.574


def conditional_ess(log_w: torch.Tensor, log_increment: torch.Tensor) -> torch.Tensor:
    """``CESS / N = (sum W w)^2 / sum W w^2`` per column of normalised log-weights ``(N, B)`` (in (0, 1])."""
    a = torch.logsumexp(log_w + log_increment, dim=0)
    b = torch.logsumexp(log_w + 2 * log_increment, dim=0)
    return torch.exp(2 * a - b)


def next_exponent(log_w: torch.Tensor, log_likelihood: torch.Tensor, beta: float, beta_max: float,
                  target: float, *, iterations: int = 50) -> float:
    """The largest ``beta' in (beta, beta_max]`` with ``CESS / N >= target`` in every column (bisection).

    ``log_likelihood``: ``log p(y | x_i)`` as ``(N, B)`` float64. Returns ``beta_max`` when it already passes.
    A step no smaller than ``1e-12 (beta_max - beta)`` is always taken, so the tempering finishes.
    """
    ll = log_likelihood - log_likelihood.max(dim=0, keepdim=True).values  # CESS is shift-invariant

    def passes(b: float) -> bool:
        return bool((conditional_ess(log_w, (b - beta) * ll) >= target).all())

    if passes(beta_max):
        return beta_max
    lo, hi = beta, beta_max
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return max(lo, beta + 1e-12 * (beta_max - beta))


def mala_move(x: torch.Tensor, log_target: Callable[[torch.Tensor], torch.Tensor],
              grad_log_target: Callable[[torch.Tensor], torch.Tensor], delta: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One MALA step for every row of ``x (n, ...)``; returns the new rows and the accepted mask ``(n,)``."""
    n = x.shape[0]
    g = grad_log_target(x)
    proposal = x + delta * g + math.sqrt(2 * delta) * torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                                  device=x.device)
    g_prop = grad_log_target(proposal)

    def log_q(to, frm, grad_frm):  # log N(to; frm + delta grad, 2 delta I), up to a constant
        return -(to - frm - delta * grad_frm).reshape(n, -1).double().square().sum(1) / (4 * delta)

    log_ratio = (log_target(proposal) - log_target(x) + log_q(x, proposal, g_prop) - log_q(proposal, x, g))
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)
    accept = torch.log(u) < log_ratio
    shape = (n,) + (1,) * (x.dim() - 1)
    return torch.where(accept.reshape(shape), proposal, x), accept


def adapt_step(delta: float, acceptance: float) -> float:
    """Robbins-Monro-style scaling of the MALA step towards the target acceptance rate."""
    return delta * math.exp(2.0 * (acceptance - MALA_TARGET_ACCEPTANCE))
