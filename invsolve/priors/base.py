"""The ``Prior`` interface in the EDM / variance-exploding sigma convention.

A diffused sample is ``x_sigma = x0 + sigma * n`` with ``n ~ N(0, I)``
(Karras et al., 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", eq. 1-3). A prior provides the posterior-mean denoiser
``D(x, sigma) = E[x0 | x_sigma = x]``; Tweedie's formula gives the score
``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2``.
"""

from __future__ import annotations

import abc

import torch


def sigma_like(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or per-item ``(B,)`` sigma to ``(B, 1, ..., 1)`` matching ``x``."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma.reshape(-1, *([1] * (x.dim() - 1)))


class Prior(abc.ABC):
    """A diffusion prior over tensors of shape ``(B, *shape)``.

    Attributes:
        shape: per-item data shape, e.g. ``(1, 64, 64)``.
        sigma_min, sigma_max: the noise range the denoiser is valid for.
        value_range: ``(low, high)`` of clean data, for display and clipping by callers.
    """

    shape: tuple[int, ...]
    sigma_min: float
    sigma_max: float
    value_range: tuple[float, float] = (0.0, 1.0)

    @abc.abstractmethod
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``E[x0 | x_sigma = x]`` for ``x`` of shape ``(B, *shape)``; sigma scalar or ``(B,)``."""

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``grad_x log p_sigma(x) = (denoise(x, sigma) - x) / sigma^2`` (Tweedie)."""
        s = sigma_like(sigma, x)
        return (self.denoise(x, sigma) - x) / s.square()

    def check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != len(self.shape) + 1 or tuple(x.shape[1:]) != tuple(self.shape):
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, self.shape))}) for this prior, got {tuple(x.shape)}"
            )
        return x


class DenoiserPrior(Prior):
    """A prior from any callable ``denoiser(x, sigma) -> x0_hat`` already in the sigma convention.

    Fits deepinv denoisers (``model(x, sigma)``) and EDM-preconditioned networks.
    """

    def __init__(
        self,
        denoiser,
        shape: tuple[int, ...],
        *,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(denoiser):
            raise TypeError("denoiser must be callable as denoiser(x, sigma)")
        self.denoiser = denoiser
        self.shape = tuple(shape)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.value_range = value_range

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return self.denoiser(x, sigma_like(sigma, x).reshape(-1))
