"""The one finite-difference (discrete gradient) operator of the project, used by every TV term.

Forward differences ``x[k+1] - x[k]`` with a zero last entry (Neumann boundary) along each axis of ``dims``,
stacked on a new leading axis; :func:`finite_difference_adjoint` is its exact adjoint (minus the discrete
divergence). Isotropic TV (:func:`invsolve.baselines.tv_reconstruct`) and the anisotropic TV of DiffusionMBIR's
ADMM (:mod:`invsolve.samplers.mbir3d`) both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def finite_difference(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Forward differences with a zero (Neumann) last row along each of ``dims``; stacked on a new axis 0."""
    grads = []
    for d in dims:
        g = torch.zeros_like(x)
        n = x.shape[d]
        g.narrow(d, 0, n - 1).copy_(x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1))
        grads.append(g)
    return torch.stack(grads, dim=0)


def finite_difference_adjoint(p: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Adjoint of :func:`finite_difference` (minus the discrete divergence)."""
    out = torch.zeros_like(p[0])
    for k, d in enumerate(dims):
        g = p[k]
        n = g.shape[d]
        out.narrow(d, 0, 1).sub_(g.narrow(d, 0, 1))
        if n > 2:
            out.narrow(d, 1, n - 2).sub_(g.narrow(d, 1, n - 2) - g.narrow(d, 0, n - 2))
        out.narrow(d, n - 1, 1).add_(g.narrow(d, n - 2, 1))
    return out
