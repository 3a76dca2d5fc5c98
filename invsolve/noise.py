"""Noise models: each owns both sampling and log-likelihood, so the two cannot disagree.

All log-likelihoods are returned per batch item (summed over every other dimension).
"""

from __future__ import annotations

import abc
import math

import torch

from invsolve._validation import require_floating, require_nonnegative_number, require_positive_number


class NoiseModel(abc.ABC):
    """``y ~ p(y | A x)``: draws measurements and scores them.

    ``model_is_exact`` is False when the operator is only an approximation of how the data arose (measured k-space
    through estimated coil maps), so that the misfit at the truth exceeds the noise; samplers that weigh the data by
    the noise level alone need it True (:class:`~invsolve.samplers.declaration.Need` ``EXACT_MODEL``).
    """

    model_is_exact: bool = True

    @abc.abstractmethod
    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``y`` given the noiseless measurement ``Ax``."""

    @abc.abstractmethod
    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        """``log p(y | Ax)`` summed over all but the batch dimension; shape ``(B,)``."""

    @abc.abstractmethod
    def grad_log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        """Gradient of :meth:`log_likelihood` with respect to ``Ax`` (same shape as ``Ax``)."""

    def validate_measurement(self, y: torch.Tensor) -> None:
        """Raise if ``y`` cannot have been produced by this noise model."""


def _sum_per_item(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y = Ax + sigma * n``.

    ``sigma = 0`` is the noiseless case and is handled explicitly: ``sample``
    returns ``Ax`` unchanged, ``log_likelihood`` is the Dirac convention
    (0 where ``y == Ax`` exactly, ``-inf`` elsewhere) and
    ``grad_log_likelihood`` raises, because the likelihood is a hard constraint
    and has no gradient. Samplers that accept noiseless data use
    :attr:`is_noiseless` and project or normalise the residual instead.
    """

    def __init__(self, sigma: float, *, model_is_exact: bool = True) -> None:
        self.sigma = require_nonnegative_number("sigma", sigma)
        self.model_is_exact = bool(model_is_exact)

    @property
    def is_noiseless(self) -> bool:
        return self.sigma == 0.0

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"

    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        require_floating("Ax", Ax)
        if self.is_noiseless:
            return Ax.clone()
        noise = torch.randn(Ax.shape, generator=generator, dtype=Ax.dtype, device=Ax.device)
        return Ax + self.sigma * noise

    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        residual = y - Ax
        if self.is_noiseless:
            exact = _sum_per_item((residual != 0).to(y.dtype)) == 0
            return torch.where(exact, 0.0, -math.inf).to(y.dtype)
        n = residual[0].numel()
        sq = _sum_per_item(residual.square())
        return -0.5 * sq / self.sigma**2 - 0.5 * n * math.log(2 * math.pi * self.sigma**2)

    def grad_log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        if self.is_noiseless:
            raise ValueError(
                "GaussianNoise(sigma=0) is a hard data constraint and its log-likelihood has no gradient; "
                "use a sampler that accepts noiseless measurements or give sigma > 0"
            )
        return (y - Ax) / self.sigma**2


class PoissonNoise(NoiseModel):
    """Scaled Poisson noise ``y = gain * Poisson(Ax / gain)``.

    ``gain`` is the value of one count, so a smaller gain means more counts and
    less relative noise. ``Ax`` must be non-negative.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = require_positive_number("gain", gain)

    def __repr__(self) -> str:
        return f"PoissonNoise(gain={self.gain})"

    def _rate(self, Ax: torch.Tensor) -> torch.Tensor:
        if bool((Ax < 0).any()):
            raise ValueError("PoissonNoise needs a non-negative noiseless measurement Ax (a Poisson rate)")
        return Ax / self.gain

    def sample(self, Ax: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        require_floating("Ax", Ax)
        return self.gain * torch.poisson(self._rate(Ax), generator=generator)

    def validate_measurement(self, y: torch.Tensor) -> None:
        if bool((y < 0).any()):
            raise ValueError("y must be non-negative under PoissonNoise (it is gain times a count)")

    def log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        counts = y / self.gain
        rate = Ax / self.gain
        log_pmf = torch.special.xlogy(counts, rate) - rate - torch.lgamma(counts + 1)
        log_pmf = torch.where(rate < 0, torch.full_like(log_pmf, -math.inf), log_pmf)
        return _sum_per_item(log_pmf)

    def grad_log_likelihood(self, y: torch.Tensor, Ax: torch.Tensor) -> torch.Tensor:
        counts = y / self.gain
        rate = Ax / self.gain
        # d/d(rate) [k log(rate) - rate] = k / rate - 1, with 0 / 0 := 0 (a zero count at zero rate).
        ratio = torch.where(counts == 0, torch.zeros_like(counts), counts / rate)
        return (ratio - 1.0) / self.gain
