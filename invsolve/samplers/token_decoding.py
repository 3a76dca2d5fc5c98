"""Confidence-ordered decoding of a masked-token prior (MaskGIT, Chang et al., CVPR 2022, sec. 3.2), as pure
functions shared by the token samplers (APS, best-of-N).

Decoding starts from a fully masked grid. Each step draws a candidate code at every masked position from some
logits, scores each candidate's confidence (its log-probability, plus Gumbel noise annealed to zero so that early
steps explore), keeps the most confident candidates and leaves the rest masked, so that after step ``t`` of ``T``
a fraction ``cos(pi/2 (t + 1) / T)`` of the grid is still masked (the cosine schedule, eq. 3 there); the last step
unmasks everything. Kept codes are never revisited.
"""

from __future__ import annotations

import math

import torch


def mask_fractions(steps: int) -> list[float]:
    """The masked fraction before each step and after the last: ``cos(pi/2 t / T)`` for ``t = 0..T`` (1 ... 0)."""
    return [math.cos(math.pi / 2 * t / steps) if t < steps else 0.0 for t in range(steps + 1)]


def masked_after(step: int, steps: int, length: int, masked_now: int) -> int:
    """How many of ``length`` positions stay masked after 0-based ``step`` of ``steps``: the cosine schedule's count,
    at least one fewer than ``masked_now`` (every step decides a token) and 0 after the last step."""
    if step >= steps - 1:
        return 0
    return max(0, min(masked_now - 1, math.floor(length * mask_fractions(steps)[step + 1])))


def gumbel(shape, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise from ``generator``."""
    u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def draw_codes(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One code per position from ``softmax(logits)`` ``(B, L, K)`` by the Gumbel-max trick: ``(B, L)``."""
    return (logits + gumbel(logits.shape, generator, logits.dtype, logits.device)).argmax(dim=-1)


def decide(tokens: torch.Tensor, candidates: torch.Tensor, confidence: torch.Tensor, keep_masked: int,
           mask_id: int) -> torch.Tensor:
    """The grid after one step: every masked position takes its candidate except the ``keep_masked`` least
    confident, which stay masked; visible positions are unchanged. All ``(B, L)``."""
    masked = tokens == mask_id
    confidence = confidence.masked_fill(~masked, math.inf)
    out = torch.where(masked, candidates, tokens)
    if keep_masked > 0:
        lowest = confidence.topk(keep_masked, dim=1, largest=False).indices
        out = out.scatter(1, lowest, mask_id)
    return out


def confidence_noise_scale(step: int, steps: int, scale: float) -> float:
    """The annealed weight of the Gumbel noise added to confidences at 0-based ``step``: ``scale (1 - (t+1)/T)``."""
    return scale * (1.0 - (step + 1) / steps)


def fully_masked(n: int, prior, device: torch.device) -> torch.Tensor:
    return torch.full((n, prior.n_tokens), prior.mask_id, dtype=torch.long, device=device)


def data_misfit(measurement, images: torch.Tensor, lam: float, l1: float) -> torch.Tensor:
    """Per item: ``lam ||y - A x||^2 + l1 ||y - A x||_1`` (the Gaussian negative log-likelihood for ``lam =
    1 / (2 sigma^2)``, optionally with an L1 term)."""
    r = measurement.residual(images).reshape(images.shape[0], -1)
    loss = lam * r.square().sum(dim=1)
    return loss + l1 * r.abs().sum(dim=1) if l1 > 0 else loss


def unguided_decode(prior, n: int, steps: int, generator: torch.Generator, *, confidence_noise: float,
                    device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``n`` unguided samples of the prior's codes ``(n, L)``, ``steps`` transformer calls."""
    tokens = fully_masked(n, prior, device)
    for step in range(steps):
        with torch.no_grad():
            logits = prior.token_logits(tokens).to(dtype)
        candidates = draw_codes(logits, generator)
        confidence = logits.log_softmax(-1).gather(-1, candidates[..., None])[..., 0]
        noise = confidence_noise_scale(step, steps, confidence_noise)
        if noise > 0:
            confidence = confidence + noise * gumbel(confidence.shape, generator, dtype, device)
        keep = masked_after(step, steps, prior.n_tokens, int((tokens == prior.mask_id).sum(1).max()))
        tokens = decide(tokens, candidates, confidence, keep, prior.mask_id)
    return tokens
