"""Adapters from variance-preserving (DDPM-style) networks to the EDM sigma convention.

A VP model sees ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n``. Dividing by
``sqrt(abar_t)`` gives the VE form ``x_sigma = x0 + sigma n`` with
``sigma_t = sqrt((1 - abar_t) / abar_t)`` (Karras et al., 2022, Table 1; Song
et al., 2021, Appendix B). So to denoise a VE input ``x`` at ``sigma``, feed
``sqrt(abar) * x`` with ``abar = 1 / (1 + sigma^2)`` at the timestep whose
sigma matches, and convert the prediction:

* epsilon-prediction (Ho et al., 2020): ``x0 = x - sigma * eps``;
* x0-prediction: ``x0`` is the output;
* v-prediction (Salimans & Ho, 2022, eq. 11): ``v = sqrt(abar) eps - sqrt(1 - abar) x0``, so
  ``x0 = sqrt(abar) x_t - sqrt(1 - abar) v``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from invsolve.priors.base import Prior, sigma_like

Prediction = Literal["epsilon", "x0", "v"]


def linear_beta_alphas_cumprod(
    num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """``abar_t = prod_{s<=t} (1 - beta_s)`` for the linear beta schedule of Ho et al. (2020)."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=dtype)
    return torch.cumprod(1.0 - betas, dim=0)


def vp_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``sigma_t = sqrt((1 - abar_t) / abar_t)`` for every discrete timestep."""
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


def sigma_to_timestep(sigma: torch.Tensor, schedule_sigmas: torch.Tensor, *, quantize: bool) -> torch.Tensor:
    """Continuous (or nearest integer) timestep whose VP sigma equals ``sigma``.

    Interpolates linearly in ``log sigma`` between neighbouring discrete steps;
    sigmas outside the schedule are an error, not clipped.
    """
    log_sched = schedule_sigmas.log().to(sigma.dtype)
    log_sigma = sigma.log()
    lo, hi = log_sched[0], log_sched[-1]
    tol = 1e-6 * float(hi - lo)
    if bool(((log_sigma < lo - tol) | (log_sigma > hi + tol)).any()):
        raise ValueError(
            f"sigma must lie in the model's range [{float(lo.exp()):.4g}, {float(hi.exp()):.4g}], "
            f"got values in [{float(sigma.min()):.4g}, {float(sigma.max()):.4g}]"
        )
    idx = torch.searchsorted(log_sched, log_sigma.clamp(lo, hi)).clamp(1, len(log_sched) - 1)
    left, right = log_sched[idx - 1], log_sched[idx]
    frac = ((log_sigma.clamp(lo, hi) - left) / (right - left)).clamp(0, 1)
    t = (idx - 1).to(sigma.dtype) + frac
    return t.round() if quantize else t


class VPPrior(Prior):
    """A VP network ``model(x_t, t)`` seen as a :class:`Prior` in the sigma convention.

    Args:
        model: callable ``model(x_t, t)``, ``t`` a float tensor of shape ``(B,)`` in ``[0, T-1]``.
        alphas_cumprod: ``abar_t`` for ``t = 0..T-1`` (decreasing).
        shape: per-item data shape ``(C, H, W)``.
        prediction: what the network predicts: ``"epsilon"``, ``"x0"`` or ``"v"``.
        quantize_timesteps: round the timestep to the nearest integer (for
            models trained on integer steps only); otherwise interpolate.
        value_range: range of clean data, typically ``(-1, 1)`` for ADM models.

    Networks with learned variance (guided-diffusion outputs ``2C`` channels)
    are handled: only the first ``C`` output channels are used.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        alphas_cumprod: torch.Tensor,
        shape: tuple[int, ...],
        *,
        prediction: Prediction = "epsilon",
        quantize_timesteps: bool = False,
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        if prediction not in ("epsilon", "x0", "v"):
            raise ValueError(f"prediction must be 'epsilon', 'x0' or 'v', got {prediction!r}")
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if abar.dim() != 1 or abar.numel() < 2:
            raise ValueError("alphas_cumprod must be a 1-D tensor with at least 2 entries")
        if not bool(((abar > 0) & (abar < 1)).all()) or not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing and inside (0, 1)")
        self.model = model
        self.alphas_cumprod = abar
        self.schedule_sigmas = vp_sigmas(abar)
        self.shape = tuple(shape)
        self.prediction = prediction
        self.quantize_timesteps = quantize_timesteps
        self.sigma_min = float(self.schedule_sigmas[0])
        self.sigma_max = float(self.schedule_sigmas[-1])
        self.value_range = value_range

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        s = sigma_like(sigma, x)
        t = sigma_to_timestep(
            s.reshape(-1).to(torch.float64), self.schedule_sigmas.to(x.device), quantize=self.quantize_timesteps
        ).to(x.dtype)
        sqrt_abar = (1.0 + s.square()).rsqrt()
        x_t = sqrt_abar * x
        out = self.model(x_t, t)[:, : self.shape[0]]
        if self.prediction == "epsilon":
            return x - s * out
        if self.prediction == "x0":
            return out
        sqrt_one_minus_abar = s * sqrt_abar
        return sqrt_abar * x_t - sqrt_one_minus_abar * out
