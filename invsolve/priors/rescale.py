"""A prior seen through an affine change of intensity units.

Checkpoints are trained on different value ranges (ADM/guided-diffusion and diffusers models on
``[-1, 1]``, our phantom priors on ``[0, 1]``). If ``x_in = a x + b`` maps the user's range onto the
model's, then ``x_sigma = x0 + sigma n`` becomes ``x_in,sigma = x0_in + (a sigma) n``, so

    ``D(x, sigma) = (D_in(a x + b, a sigma) - b) / a``

and the sigma range scales by ``1 / a``. Tweedie's score follows from ``D`` as usual.
"""

from __future__ import annotations

import torch

from invsolve.priors.base import Prior, sigma_like


class RescaledPrior(Prior):
    """``prior`` (on ``prior.value_range``) expressed on ``value_range`` by the affine map between the two ranges."""

    def __init__(self, prior: Prior, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be a Prior, got {type(prior).__name__}")
        lo, hi = (float(v) for v in value_range)
        in_lo, in_hi = (float(v) for v in prior.value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
        self.inner = prior
        self.scale = (in_hi - in_lo) / (hi - lo)
        self.offset = in_lo - self.scale * lo
        self.shape = tuple(prior.shape)
        self.sigma_min = prior.sigma_min / self.scale
        self.sigma_max = prior.sigma_max / self.scale
        self.value_range = (lo, hi)

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        s = sigma_like(sigma, x).reshape(-1)
        return (self.inner.denoise(self.scale * x + self.offset, self.scale * s) - self.offset) / self.scale
