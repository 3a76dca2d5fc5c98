"""Exact Gaussian algebra of a linear-Gaussian likelihood in the SVD basis of the operator.

For ``p(y | x) = N(y; A x, sigma_y^2 I)`` and ``A = U diag(s) V^T`` (thin, on flattened tensors),
with ``z = V^T x`` and ``y_bar = U^T y``, the likelihood factorises over the measured coordinates:
``||y - A x||^2 = sum_i (y_bar_i - s_i z_i)^2 + ||y_perp||^2`` where ``y_perp`` is the part of ``y``
outside the range of ``U``. Everything the Feynman--Kac samplers need is then one-dimensional:

* the tempered likelihood ``p(y | x)^beta`` integrated against a Gaussian kernel ``N(x'; m, v I)``
  (the normaliser of the tilted kernel):
  ``log E[p(y|x')^beta] = -beta (d_y / 2) log(2 pi sigma^2) - beta ||y_perp||^2 / (2 sigma^2)
  + sum_i [ log sqrt(2 pi sigma^2 / beta) + log N(y_bar_i; s_i m_i, sigma^2 / beta + v s_i^2) ]``;
* a draw from the tilted kernel ``N(x'; m, v I) p(y | x')^beta / E[...]``: per measured coordinate
  the Gaussian product with variance ``v c / (c + v s_i^2)``, ``c = sigma^2 / beta``, and mean
  ``m_i + v s_i (y_bar_i - s_i m_i) / (c + v s_i^2)``; unmeasured directions keep ``N(m, v I)``;
* the exact Ornstein--Uhlenbeck flow ``dx = -beta grad U(x) dt + sqrt(2) dW`` over time ``delta``
  (``U = -log p(y | x)``), used by the Langevin corrector so that stiff likelihoods
  (``s^2 / sigma^2`` large) impose no step-size limit.

Arithmetic on particles runs in their dtype; reductions that feed log-weights in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from invsolve.measurement import Measurement
from invsolve.samplers._common import require_gaussian_noise, require_linear
from invsolve.operators.spectral import SpectralBasis, spectral_decomposition


@dataclass(frozen=True)
class SpectralLikelihood:
    """``N(y; A x, sigma^2 I)`` for ``B`` measurements, held as the basis ``V (d, k)``, ``s (k,)``, ``y_bar (B, k)``."""

    V: SpectralBasis
    s: torch.Tensor
    y_bar: torch.Tensor
    y_perp_sq: torch.Tensor  # (B,) float64
    sigma2: float
    d_y: int

    @classmethod
    def from_measurement(cls, measurement: Measurement, sampler: str) -> SpectralLikelihood:
        op = require_linear(measurement, sampler)
        sigma = require_gaussian_noise(measurement, sampler)
        if not sigma > 0:
            raise ValueError(f"{sampler} weights particles by p(y | x), which needs sigma_y > 0; got {sigma}")
        y = measurement.y
        U, s, V = spectral_decomposition(op, like=y)
        y_flat = y.reshape(y.shape[0], -1)
        y_bar = U.project(y_flat)
        y_perp_sq = (y_flat.double().square().sum(1) - y_bar.double().square().sum(1)).clamp_min(0)
        return cls(V, s, y_bar, y_perp_sq, float(sigma) ** 2, y_flat.shape[1])

    @property
    def batch(self) -> int:
        return self.y_bar.shape[0]

    def _rows(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, ...)`` -> ``(n, ...)`` for particles laid out as item ``i * B + b``."""
        return t.repeat(n // t.shape[0], *([1] * (t.dim() - 1))) if t.shape[0] != n else t

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(y; A x, sigma^2 I)`` per flattened row of ``x (n, d)``, float64."""
        n = x.shape[0]
        r = (self._rows(self.y_bar, n) - self.V.project(x) * self.s).double()
        sq = r.square().sum(1) + self._rows(self.y_perp_sq, n)
        return -0.5 * sq / self.sigma2 - 0.5 * self.d_y * math.log(2 * math.pi * self.sigma2)

    def tilted_log_normalizer(self, m: torch.Tensor, v: float, beta: float, *,
                              coords: torch.Tensor | None = None) -> torch.Tensor:
        """``log E_{x' ~ N(m, v I)}[p(y | x')^beta]`` per row of ``m (n, d)``, float64 (0 when ``beta = 0``).

        ``coords``: ``V^T m`` when already known (saves a ``(n, d) x (d, k)`` product).
        """
        if beta == 0:
            return torch.zeros(m.shape[0], dtype=torch.float64, device=m.device)
        n = m.shape[0]
        c = self.sigma2 / beta
        var = (c + v * self.s.double().square())  # (k,)
        zm = self.V.project(m) if coords is None else coords
        r = self._rows(self.y_bar, n).double() - zm.double() * self.s.double()
        per_coord = -0.5 * r.square() / var - 0.5 * torch.log(var) + 0.5 * math.log(c)  # the 2 pi's cancel
        const = -0.5 * beta * self.d_y * math.log(2 * math.pi * self.sigma2)
        return const - 0.5 * beta * self._rows(self.y_perp_sq, n) / self.sigma2 + per_coord.sum(1)

    def tilted_sample(self, m: torch.Tensor, v: float, beta: float, noise: torch.Tensor,
                      noise_k: torch.Tensor, *, coords: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A draw ``x'`` from ``N(x'; m, v I) p(y | x')^beta`` (normalised) and its coordinates ``V^T x'``.

        ``noise (n, d)``, ``noise_k (n, k)`` standard normal; ``coords``: ``V^T m`` when already known.
        """
        zm = self.V.project(m) if coords is None else coords
        x = m + math.sqrt(v) * noise
        zx = zm + math.sqrt(v) * self.V.project(noise)
        if beta == 0:
            return x, zx
        n = m.shape[0]
        c = self.sigma2 / beta
        denom = c + v * self.s.square()
        mean = zm + v * self.s * (self._rows(self.y_bar, n) - self.s * zm) / denom
        z = mean + (v * c / denom).sqrt() * noise_k
        return x + self.V.embed(z - zx), z

    def ou_flow(self, x: torch.Tensor, delta: float, beta: float, noise: torch.Tensor,
                noise_k: torch.Tensor) -> torch.Tensor:
        """Exact solution over time ``delta`` of ``dx = beta grad log p(y | x) dt + sqrt(2) dW``."""
        out = x + math.sqrt(2 * delta) * noise
        if beta == 0:
            return out
        n = x.shape[0]
        a = beta * self.s.square() / self.sigma2
        centre = self._rows(self.y_bar, n) / self.s
        decay = torch.exp(-a * delta)
        z = centre + (self.V.project(x) - centre) * decay + ((1 - decay.square()) / a).sqrt() * noise_k
        return out + self.V.embed(z - self.V.project(out))
