"""APS: anchored posterior sampling with a masked-token prior (Rout et al., 2025, "Anchored Posterior Sampling").

Decoding runs as MaskGIT's (:mod:`invsolve.samplers.token_decoding`), but at every step the prior's logits are
tilted towards the measurement before any token is decided:

1. one transformer call gives the prior's logits ``l`` at the masked positions (no backpropagation through it);
2. light-weight logits ``phi``, initialised at ``l``, take ``inner_steps`` Adam steps on the data misfit
   ``lam ||y - A D(e(phi))||^2 (+ l1 ||y - A D(e(phi))||_1)`` through the decoder ``D``, where ``e(phi)`` is the
   **quantized expectation**: the probability-weighted codebook embedding ``softmax(phi) @ codebook`` snapped to its
   nearest code in the forward pass, with the straight-through gradient of the soft expectation (``expectation=
   "soft"`` drops the snap: the ablation); visible positions keep their codes' embeddings;
3. candidates are drawn from ``softmax(phi)``, and **anchored remasking** keeps the candidates most confident under
   the tilted logits ``phi`` (``anchor="prior"``: under the prior's ``l``, the ablation), remasking the rest by the
   cosine schedule; kept tokens are anchors that later steps condition on.

With ``inner_steps=0`` the tilt vanishes and APS is unguided decoding. ``lam`` defaults to ``1 / (2 sigma_y^2)``,
the Gaussian negative log-likelihood. Cost: ``steps`` transformer calls (reported as ``nfe``), ``steps x
inner_steps`` decoder forward and backward passes, one final decode.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.samplers._common import Callback, require_gaussian_noise, start
from invsolve.samplers.declaration import NONNEGATIVE, POSITIVE, Need, Range, SamplerDeclaration
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.token_decoding import (confidence_noise_scale, data_misfit, decide, draw_codes,
                                              fully_masked, gumbel, mask_fractions, masked_after)

ANCHORS = ("tilted", "prior")
EXPECTATIONS = ("quantized", "soft")


def quantized_expectation(logits: torch.Tensor, codebook: torch.Tensor, quantized: bool = True) -> torch.Tensor:
    """``softmax(logits) @ codebook`` ``(B, L, C)``; with ``quantized`` its forward value is snapped to the nearest
    code while its gradient stays the soft expectation's (straight-through)."""
    soft = logits.softmax(dim=-1) @ codebook
    if not quantized:
        return soft
    nearest = torch.cdist(soft.reshape(-1, soft.shape[-1]), codebook).argmin(dim=1)
    snapped = codebook[nearest].reshape(soft.shape)
    return soft + (snapped - soft).detach()


def tilted_logits(measurement: Measurement, prior, tokens: torch.Tensor, logits: torch.Tensor, *, inner_steps: int,
                  lr: float, lam: float, l1: float, quantized: bool, kl: float = 0.0) -> torch.Tensor:
    """The prior's ``logits (B, L, K)`` after ``inner_steps`` Adam steps on the data misfit of the decoded
    (quantized) expectation, visible positions of ``tokens`` fixed to their codes (step 2 of the module docstring)."""
    if inner_steps == 0:
        return logits
    codebook = prior.codebook.to(logits)
    masked = (tokens == prior.mask_id)[..., None]
    visible = codebook[tokens.clamp_max(prior.mask_id - 1)]
    phi = logits.detach().clone().requires_grad_(True)
    prior_log = logits.detach().log_softmax(dim=-1)
    optimizer = torch.optim.Adam([phi], lr=lr)
    with torch.enable_grad():
        for _ in range(inner_steps):
            e = torch.where(masked, quantized_expectation(phi, codebook, quantized), visible)
            loss = data_misfit(measurement, prior.decode_embeddings(prior.grid(e)), lam, l1).sum()
            if kl > 0:
                log_q = phi.log_softmax(dim=-1)
                loss = loss + kl * (masked * log_q.exp() * (log_q - prior_log)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return phi.detach()


def aps(measurement: Measurement, prior, *, steps: int | None = 16, sigmas=None, n_samples: int = 1,
        generator: torch.Generator, callback: Callback | None = None, inner_steps: int = 20, lr: float = 0.5,
        lam: float | None = None, l1: float = 0.0, anchor: str = "tilted", expectation: str = "quantized",
        confidence_noise: float = 1.0, kl: float = 0.0, anchor_temperature: float = 1.0) -> SamplerOutput:
    """Anchored posterior sampling (module docstring).

    Args:
        prior: a :class:`~invsolve.priors.tokens.MaskedTokenPrior`.
        steps: decoding steps (transformer calls), at most the number of tokens.
        inner_steps, lr: Adam steps on the tilted logits per decoding step and their learning rate.
        lam, l1: weights of the squared and absolute residual (``lam`` default ``1 / (2 sigma_y^2)``).
        anchor: ``"tilted"`` (APS) or ``"prior"`` (ablation): whose confidence decides which tokens stay.
        expectation: ``"quantized"`` (APS) or ``"soft"`` (ablation): what the decoder sees while tilting.
        confidence_noise: weight of the Gumbel noise on confidences, annealed to 0 (MaskGIT's choice temperature).
        kl: weight of ``KL(softmax(phi) || softmax(l))`` at the masked positions, holding the tilt near the prior's
            logits (0, as published; a variational reading of the tilt).
        anchor_temperature: the tilted logits are divided by it before their confidences are ranked (1, as
            published); only the ranking changes, candidates are still drawn from ``softmax(phi)``.
    """
    if sigmas is not None:
        raise ValueError("aps decodes tokens on a cosine masking schedule; give steps, not sigmas")
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    if expectation not in EXPECTATIONS:
        raise ValueError(f"expectation must be one of {EXPECTATIONS}, got {expectation!r}")
    sigma_y = require_gaussian_noise(measurement, "APS")
    if lam is None:
        lam = 1.0 / (2.0 * max(sigma_y, 1e-3) ** 2)
    n_tokens = getattr(prior, "n_tokens", None)
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise ValueError(f"steps must be an integer, got {steps!r}")
    if n_tokens is not None and not 1 <= steps <= n_tokens:
        raise ValueError(f"steps must be between 1 and the number of tokens ({n_tokens}), got {steps}")
    run = start(measurement, prior, steps=steps, sigmas=None, rho=1.0, n_samples=n_samples, generator=generator,
                callback=callback, schedule=lambda p, n, given, r: mask_fractions(n))
    y = run.measurement.y
    dtype = y.dtype if y.is_floating_point() else torch.float32
    tokens = fully_masked(run.n_items, prior, y.device)
    for i, fraction, _ in run.transitions():
        with torch.no_grad():
            logits = prior.token_logits(tokens).to(dtype)
        phi = tilted_logits(run.measurement, prior, tokens, logits, inner_steps=inner_steps, lr=lr, lam=lam, l1=l1,
                            quantized=expectation == "quantized", kl=kl)
        candidates = draw_codes(phi, generator)
        judge = phi / anchor_temperature if anchor == "tilted" else logits
        confidence = judge.log_softmax(-1).gather(-1, candidates[..., None])[..., 0]
        noise = confidence_noise_scale(i, run.n_steps, confidence_noise)
        if noise > 0:
            confidence = confidence + noise * gumbel(confidence.shape, generator, dtype, y.device)
        keep = masked_after(i, run.n_steps, prior.n_tokens, int((tokens == prior.mask_id).sum(1).max()))
        tokens = decide(tokens, candidates, confidence, keep, prior.mask_id)
        run.report(i, fraction, tokens)
    with torch.no_grad():
        x = prior.decode_tokens(tokens)
    return run.output(x, nfe=run.n_steps, transformer_calls=run.n_steps, decoder_calls=run.n_steps * inner_steps + 1,
                      backward_passes=run.n_steps * inner_steps, tokens=tokens.detach(), lam=lam)


DECLARATION = SamplerDeclaration(
    "aps", aps, default_steps=16, needs={Need.TOKEN_PRIOR, Need.GAUSSIAN_NOISE}, label="APS",
    ranges={"inner_steps": Range(0, 10000, integer=True), "lr": NONNEGATIVE, "lam": NONNEGATIVE, "l1": NONNEGATIVE,
            "confidence_noise": NONNEGATIVE, "kl": NONNEGATIVE, "anchor_temperature": POSITIVE})
