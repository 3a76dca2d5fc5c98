"""Distances between sample sets: the sliced Wasserstein distance and its sampling floor.

Sliced Wasserstein-1 (Rabin et al., 2011; Bonneel et al., 2015):

    SW_1(mu, nu) = E_theta [ W_1(theta#mu, theta#nu) ],   theta uniform on the unit sphere,

estimated by the mean over ``n_directions`` random unit directions. The 1-D
distance uses the CDF form ``W_1 = int |F(t) - G(t)| dt`` (Vallender, 1974),
exact for empirical measures of any sizes and weights. For two equal-size
unweighted sets it equals the mean absolute difference of the sorted
projections.

Because two finite sample sets from the *same* distribution are at positive
distance, every reported SW should sit beside its floor: the SW between two
independent exact sample sets of the same size (:func:`sliced_wasserstein_floor`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from invsolve._validation import require_finite, require_floating, require_tensor


def random_directions(
    d: int,
    n_directions: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(d, n_directions)`` independent directions, uniform on the unit sphere (normalised Gaussians)."""
    theta = torch.randn(d, n_directions, generator=generator, dtype=dtype, device=device)
    return theta / theta.norm(dim=0, keepdim=True)


def wasserstein_1d(
    u: torch.Tensor,
    v: torch.Tensor,
    u_weights: torch.Tensor | None = None,
    v_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact W1 between 1-D empirical measures, batched over the last axis.

    Args:
        u: ``(N, L)`` support points of ``L`` measures; v: ``(M, L)``.
        u_weights, v_weights: ``(N,)``/``(N, L)`` and ``(M,)``/``(M, L)`` non-negative weights
            (normalised here); uniform when None.

    Returns:
        ``(L,)`` distances.
    """
    N, M = u.shape[0], v.shape[0]
    if u_weights is None and v_weights is None and N == M:
        return (u.sort(dim=0).values - v.sort(dim=0).values).abs().mean(dim=0)

    def _w(w, n, like):
        if w is None:
            return torch.full_like(like, 1.0 / n)
        w = w.to(like.dtype)
        w = w[:, None].expand_as(like) if w.dim() == 1 else w
        return w / w.sum(dim=0, keepdim=True)

    wu, wv = _w(u_weights, N, u), _w(v_weights, M, v)
    pts = torch.cat([u, v], dim=0)  # (N + M, L)
    mass = torch.cat([wu, -wv], dim=0)  # +mass for u, -mass for v: the running sum is F - G
    order = pts.argsort(dim=0)
    pts = pts.gather(0, order)
    diff_cdf = mass.gather(0, order).cumsum(dim=0)[:-1]
    gaps = pts[1:] - pts[:-1]
    return (diff_cdf.abs() * gaps).sum(dim=0)


def _flat(name: str, x: torch.Tensor) -> torch.Tensor:
    require_finite(name, require_floating(name, require_tensor(name, x)))
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (n_samples, *dims), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def sliced_wasserstein(
    a: torch.Tensor,
    b: torch.Tensor,
    n_directions: int = 100,
    generator: torch.Generator | None = None,
    *,
    a_weights: torch.Tensor | None = None,
    b_weights: torch.Tensor | None = None,
    directions: torch.Tensor | None = None,
) -> float:
    """Sliced Wasserstein-1 distance between sample sets ``a (N, *dims)`` and ``b (M, *dims)``.

    The mean over ``n_directions`` random unit directions (drawn from ``generator``, so
    a fixed seed gives a fixed value) of the exact 1-D W1 between the projections.
    Optional per-sample weights (``(N,)``, ``(M,)``) support weighted particle sets.
    ``directions`` (``(d, L)`` unit columns) overrides the random draw. Computed in float64.
    """
    a, b = _flat("a", a).to(torch.float64), _flat("b", b).to(torch.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    if directions is None:
        if n_directions < 1:
            raise ValueError(f"n_directions must be >= 1, got {n_directions}")
        gen_device = generator.device if generator is not None else a.device
        directions = random_directions(a.shape[1], n_directions, generator, device=gen_device).to(a.device)
    directions = directions.to(device=a.device, dtype=torch.float64)
    return float(wasserstein_1d(a @ directions, b @ directions, a_weights, b_weights).mean())


def sliced_wasserstein_floor(
    sample: Callable[[int, torch.Generator], torch.Tensor],
    n_samples: int,
    n_directions: int = 100,
    generator: torch.Generator | None = None,
    *,
    reference: torch.Tensor | None = None,
) -> float:
    """The SW between two independent exact sample sets of size ``n_samples``: the noise floor.

    Args:
        sample: ``sample(n, generator) -> (n, *dims)`` exact draws from the target.
        reference: an existing exact set of size ``n_samples`` to compare a fresh set against
            (the natural floor for results measured against that reference); drawn when None.
        generator: drives the draws and the directions.
    """
    first = reference if reference is not None else sample(n_samples, generator)
    if first.shape[0] != n_samples:
        raise ValueError(f"reference has {first.shape[0]} samples, expected {n_samples}")
    second = sample(n_samples, generator)
    return sliced_wasserstein(first, second, n_directions, generator)
