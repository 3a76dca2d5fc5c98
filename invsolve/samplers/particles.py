"""The weighted-particle engine shared by the SMC / Feynman--Kac samplers.

A particle system for ``B`` measurements holds ``N`` particles per measurement, laid out as one
batch ``(N * B, *x_shape)`` with item ``i * B + b`` = particle ``i`` of measurement ``b`` (the
layout of every sampler's ``n_samples``), and their log-weights ``(N, B)``.

* Weights live in log space, normalised after every update (``logsumexp = 0`` per measurement);
  incoming log-increments are mean-centred first (the FKC convention, which keeps the numbers small
  in float64) and the centring constant is added back into the evidence.
* The running log-evidence is the standard SMC estimate
  ``log Z = sum_k log sum_i W_i^(k) w_k(x_i)`` (Del Moral, 2004; Doucet & Johansen, 2009, eq. 31),
  accumulated in log space, unbiased for ``Z`` (not for ``log Z``).
* Resampling (multinomial or systematic; Douc, Cappe & Moulines, 2005) happens for the
  measurements whose effective sample size ``ESS = 1 / sum_i W_i^2`` is at or below
  ``threshold * N``; ``threshold = 1`` resamples at every step.
* A NaN or ``+inf`` increment, or a step at which every particle of a measurement gets weight zero,
  raises :class:`WeightDegeneracyError` naming the step instead of producing NaN weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

RESAMPLING_SCHEMES = ("systematic", "multinomial")


class WeightDegeneracyError(FloatingPointError):
    """Raised when particle weights cannot be normalised (NaN, +inf, or all zero)."""


def log_normalize(log_w: torch.Tensor) -> torch.Tensor:
    """``log_w - logsumexp(log_w)`` over the particle axis 0."""
    return log_w - torch.logsumexp(log_w, dim=0, keepdim=True)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """Kish's ESS ``(sum w)^2 / sum w^2`` per column of ``(N, B)`` log-weights, computed in log space."""
    return torch.exp(2 * torch.logsumexp(log_w, dim=0) - torch.logsumexp(2 * log_w, dim=0))


def systematic_indices(log_w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Systematic resampling: ``N`` ancestors per column from one uniform, positions ``(u + i) / N``."""
    n, b = log_w.shape
    w = torch.softmax(log_w.to(torch.float64), dim=0)
    cdf = torch.cumsum(w, dim=0).T.contiguous()  # (B, N)
    cdf[:, -1] = 1.0  # guard against round-off in the last bin
    u = torch.rand((b, 1), generator=generator, dtype=torch.float64, device=log_w.device)
    positions = (u + torch.arange(n, dtype=torch.float64, device=log_w.device)) / n
    return torch.searchsorted(cdf, positions).clamp_max(n - 1).T.contiguous()


def multinomial_indices(log_w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Multinomial resampling: ``N`` i.i.d. ancestors per column, drawn with probabilities ``W``."""
    n = log_w.shape[0]
    w = torch.softmax(log_w.to(torch.float64), dim=0).T
    return torch.multinomial(w, n, replacement=True, generator=generator).T.contiguous()


def resample_indices(log_w: torch.Tensor, scheme: str, generator: torch.Generator) -> torch.Tensor:
    """Ancestor indices ``(N, B)`` by ``scheme`` (``"systematic"`` or ``"multinomial"``)."""
    if scheme == "systematic":
        return systematic_indices(log_w, generator)
    if scheme == "multinomial":
        return multinomial_indices(log_w, generator)
    raise ValueError(f"resampling must be one of {RESAMPLING_SCHEMES}, got {scheme!r}")


def gather_particles(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (``(N * B, ...)``, item ``i * B + b``) picked by ancestor ``indices (N, B)``."""
    n, b = indices.shape
    flat = (indices * b + torch.arange(b, device=indices.device)).reshape(-1)
    return x.index_select(0, flat.to(x.device))


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """``fn(x)`` evaluated on at most ``chunk`` rows at a time (all at once when ``chunk`` is None)."""
    if chunk is None or chunk >= x.shape[0]:
        return fn(x)
    return torch.cat([fn(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], dim=0)


def check_smc_options(n_particles: int, resampling: str, ess_threshold: float, chunk: int | None) -> None:
    if not isinstance(n_particles, int) or isinstance(n_particles, bool) or n_particles < 1:
        raise ValueError(f"n_samples (the number of particles) must be a positive integer, got {n_particles!r}")
    if resampling not in RESAMPLING_SCHEMES:
        raise ValueError(f"resampling must be one of {RESAMPLING_SCHEMES}, got {resampling!r}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must lie in [0, 1] (a fraction of the particle count), got {ess_threshold}")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive integer or None, got {chunk!r}")


@dataclass
class ParticleWeights:
    """Normalised log-weights of ``N`` particles for ``B`` measurements, with evidence and diagnostics.

    Create with :meth:`uniform`; feed log-increments with :meth:`reweight`; call :meth:`resample`
    where the algorithm allows it and apply the returned ancestors to the particles.
    """

    log_w: torch.Tensor  # (N, B) float64, logsumexp over axis 0 == 0
    log_evidence: torch.Tensor  # (B,) float64
    ess_trace: list[torch.Tensor] = field(default_factory=list)
    resampled: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def uniform(cls, n_particles: int, batch: int, device: torch.device | str = "cpu") -> ParticleWeights:
        log_w = torch.full((n_particles, batch), -math.log(n_particles), dtype=torch.float64, device=device)
        return cls(log_w, torch.zeros(batch, dtype=torch.float64, device=device))

    @property
    def n_particles(self) -> int:
        return self.log_w.shape[0]

    def ess(self) -> torch.Tensor:
        return effective_sample_size(self.log_w)

    def reweight(self, log_increment: torch.Tensor, step: int | str) -> None:
        """Multiply the weights by ``exp(log_increment)`` (``(N * B,)`` or ``(N, B)``) and update the evidence."""
        inc = log_increment.detach().to(torch.float64).reshape(self.log_w.shape)
        finite = torch.isfinite(inc)
        centre = torch.where(finite, inc, torch.zeros_like(inc)).sum(0) / finite.sum(0)
        log_w = self.log_w + (inc - centre)
        total = torch.logsumexp(log_w, dim=0)
        # the three checks read back together: one host-device synchronisation per step, not three
        nonfinite, all_zero, underflow = torch.stack([
            torch.isnan(inc).any() | (inc == math.inf).any(), ~finite.any(dim=0).all(), ~torch.isfinite(total).all(),
        ]).tolist()
        if nonfinite:
            raise WeightDegeneracyError(
                f"step {step}: a particle log-weight increment is NaN or +inf "
                "(the likelihood or the network produced a non-finite value)"
            )
        if all_zero:
            raise WeightDegeneracyError(
                f"step {step}: every particle of some measurement got weight zero (log-increment -inf); "
                "the measurement is impossible under the model, or sigma_y is too small for the step size"
            )
        if underflow:
            raise WeightDegeneracyError(f"step {step}: the particle weights underflowed to zero for every particle")
        self.log_evidence = self.log_evidence + total + centre
        self.log_w = log_w - total

    def resample(self, threshold: float, scheme: str, generator: torch.Generator) -> torch.Tensor | None:
        """Ancestors ``(N, B)`` when some measurement's ESS is ``<= threshold * N`` (others keep their own), else None.

        Records the ESS before resampling and which measurements were resampled.
        """
        ess = self.ess()
        self.ess_trace.append(ess)
        due = ess <= threshold * self.n_particles + 1e-9
        self.resampled.append(due)
        if not due.any():
            return None
        indices = resample_indices(self.log_w, scheme, generator)
        keep = torch.arange(self.n_particles, device=indices.device)[:, None].expand_as(indices)
        indices = torch.where(due.to(indices.device)[None, :], indices, keep)
        self.log_w = torch.where(due[None, :], torch.full_like(self.log_w, -math.log(self.n_particles)), self.log_w)
        return indices

    def diagnostics(self) -> dict:
        """ESS trace ``(steps, B)``, resampling count per measurement, and the log-evidence ``(B,)``."""
        b = self.log_w.shape[1]
        empty = torch.zeros(0, b, dtype=torch.float64)
        return {
            "ess": torch.stack(self.ess_trace) if self.ess_trace else empty,
            "resample_count": torch.stack(self.resampled).sum(0) if self.resampled else torch.zeros(b, dtype=torch.long),
            "log_evidence": self.log_evidence.clone(),
        }
