"""The result every sampler returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class StepInfo:
    """What a sampler reports to its ``callback`` after each step."""

    step: int
    total_steps: int
    sigma: float
    x: torch.Tensor
    denoised: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def weighted_moments(samples: torch.Tensor, log_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the sample axis 0, optionally self-normalised-weighted.

    ``samples``: ``(N, B, ...)``; ``log_weights``: ``(N, B)`` unnormalised log-weights or None.
    Unweighted std uses the unbiased ``N - 1`` divisor (0 when ``N == 1``).
    """
    if log_weights is None:
        mean = samples.mean(dim=0)
        n = samples.shape[0]
        std = samples.std(dim=0, correction=1) if n > 1 else torch.zeros_like(mean)
        return mean, std
    w = torch.softmax(log_weights.to(samples.dtype), dim=0)
    w = w.reshape(*w.shape, *([1] * (samples.dim() - w.dim())))
    mean = (w * samples).sum(dim=0)
    var = (w * (samples - mean).square()).sum(dim=0)
    return mean, var.sqrt()


@dataclass
class SamplerOutput:
    """Posterior samples for a batch of ``B`` measurements.

    Attributes:
        samples: ``(n_samples, B, *x_shape)``.
        nfe: number of network (denoiser) evaluations per sample.
        log_weights: ``(n_samples, B)`` unnormalised log importance weights (weighted samplers), else None.
        trajectory: optional list of intermediate states.
        diagnostics: sampler-specific extras (ESS traces, log-evidence, timings...).
    """

    samples: torch.Tensor
    nfe: int
    log_weights: torch.Tensor | None = None
    trajectory: list[torch.Tensor] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples.dim() < 2:
            raise ValueError(f"samples must have shape (n_samples, batch, ...), got {tuple(self.samples.shape)}")
        if self.log_weights is not None and tuple(self.log_weights.shape) != tuple(self.samples.shape[:2]):
            raise ValueError(
                f"log_weights must have shape {tuple(self.samples.shape[:2])}, got {tuple(self.log_weights.shape)}"
            )

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def weights(self) -> torch.Tensor:
        """Normalised weights ``(n_samples, B)``; uniform when the sampler is unweighted."""
        if self.log_weights is None:
            return torch.full(self.samples.shape[:2], 1.0 / self.n_samples, dtype=self.samples.dtype)
        return torch.softmax(self.log_weights, dim=0)

    @property
    def mean(self) -> torch.Tensor:
        return weighted_moments(self.samples, self.log_weights)[0]

    @property
    def std(self) -> torch.Tensor:
        return weighted_moments(self.samples, self.log_weights)[1]


Posterior = SamplerOutput
