"""Total-variation regularised least squares by the primal-dual hybrid gradient method.

Solves ``min_x 1/2 ||A x - y||^2 + lam * TV(x)`` (optionally with ``x >= 0``)
with the algorithm of Chambolle & Pock (2011), "A first-order primal-dual
algorithm for convex problems with applications to imaging", Algorithm 1,
using ``K = [A; grad]``. TV is isotropic and couples channels (for complex
images stored as two channels it is the TV of the complex image): per pixel the
Euclidean norm is taken over channels and spatial directions.
"""

from __future__ import annotations

import torch

from invsolve.operators.base import LinearOperator
from invsolve.operators.finite_difference import finite_difference, finite_difference_adjoint


def _project_tv_ball(p: torch.Tensor, radius: float, spatial_dims: int) -> torch.Tensor:
    """Pointwise projection onto ``{|p| <= radius}``; the norm runs over directions (axis 0) and channel axes.

    ``p`` has shape ``(directions, B, *channel_axes, *spatial_axes)``.
    """
    norm_axes = (0, *range(2, p.dim() - spatial_dims))
    norm = p.square().sum(dim=norm_axes, keepdim=True).sqrt()
    return p / torch.clamp(norm / radius, min=1.0)


def tv_reconstruct(
    operator: LinearOperator,
    y: torch.Tensor,
    lam: float,
    *,
    iterations: int = 300,
    spatial_dims: int = 2,
    nonnegative: bool = False,
    x0: torch.Tensor | None = None,
    operator_norm: float | None = None,
) -> torch.Tensor:
    """TV-regularised least-squares reconstruction of ``y`` (shape ``(B, *operator.y_shape)``).

    Args:
        lam: TV weight (>= 0), in the units of ``1/2 ||A x - y||^2``.
        spatial_dims: TV acts on the last 2 (images) or 3 (volumes) axes of ``x``.
        nonnegative: constrain ``x >= 0`` (a model choice; off by default).
        x0: starting point (default: zeros).
        operator_norm: ``||A||`` if known (default: power iteration).
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be an invsolve LinearOperator, got {type(operator).__name__}")
    operator.check_y(y, "y")
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if spatial_dims not in (1, 2, 3) or spatial_dims > len(operator.x_shape):
        raise ValueError(
            f"spatial_dims must be 1, 2 or 3 and at most the rank of x_shape {operator.x_shape}, got {spatial_dims}"
        )
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    batch = y.shape[0]
    dims = tuple(range(-spatial_dims, 0))
    # ||K||^2 <= ||A||^2 + ||grad||^2 and ||grad||^2 <= 4 * spatial_dims.
    a_norm = operator.operator_norm(dtype=y.dtype, device=y.device, iterations=30,
                                    generator=torch.Generator(device=y.device).manual_seed(0)) \
        if operator_norm is None else float(operator_norm)
    k_norm = (1.01 * a_norm**2 + 4 * spatial_dims) ** 0.5
    tau = sigma = 0.99 / k_norm
    x = torch.zeros((batch, *operator.x_shape), dtype=y.dtype, device=y.device) if x0 is None else x0.clone()
    x_bar = x.clone()
    q = torch.zeros_like(y)  # dual of the data term
    p = torch.zeros((spatial_dims, *x.shape), dtype=y.dtype, device=y.device)  # dual of TV
    with torch.no_grad():
        for _ in range(iterations):
            q = (q + sigma * (operator.A(x_bar) - y)) / (1.0 + sigma)
            p = p + sigma * finite_difference(x_bar, dims)
            p = _project_tv_ball(p, lam, spatial_dims) if lam > 0 else torch.zeros_like(p)
            x_new = x - tau * (operator.A_adjoint(q) + finite_difference_adjoint(p, dims))
            if nonnegative:
                x_new = x_new.clamp_min(0.0)
            x_bar = 2 * x_new - x
            x = x_new
    return x
