"""Best-of-N: the baseline every guided token sampler must beat (APS's, Rout et al., 2025).

Draw ``candidates`` unguided samples of a masked-token prior per requested sample (confidence-ordered decoding,
:func:`invsolve.samplers.token_decoding.unguided_decode`), decode them, and keep the one that fits the measurement
best (smallest ``||y - A x||^2``). Its cost grows linearly with ``candidates``: ``steps x candidates`` transformer
calls and ``candidates`` decodes per sample, so that comparisons at equal wall time choose ``candidates``.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.samplers._common import Callback, replicate, start
from invsolve.samplers.declaration import NONNEGATIVE, Need, Range, SamplerDeclaration
from invsolve.samplers.output import SamplerOutput
from invsolve.samplers.token_decoding import data_misfit, mask_fractions, unguided_decode


def best_of_n(measurement: Measurement, prior, *, steps: int | None = 16, sigmas=None, n_samples: int = 1,
              generator: torch.Generator, callback: Callback | None = None, candidates: int = 8,
              confidence_noise: float = 1.0, chunk: int = 64) -> SamplerOutput:
    """Best of ``candidates`` unguided samples by data fit (module docstring); ``chunk`` bounds how many candidates
    are decoded at once (memory), not the result."""
    if sigmas is not None:
        raise ValueError("best-of-n decodes tokens on a cosine masking schedule; give steps, not sigmas")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= prior.n_tokens:
        raise ValueError(f"steps must be an integer between 1 and the number of tokens, got {steps!r}")
    run = start(measurement, prior, steps=steps, sigmas=None, rho=1.0, n_samples=n_samples, generator=generator,
                callback=callback, schedule=lambda p, n, given, r: mask_fractions(n))
    y = run.measurement.y
    dtype = y.dtype if y.is_floating_point() else torch.float32
    n = run.n_items
    best = best_fit = None
    per_chunk = max(1, chunk // n)
    for first in range(0, candidates, per_chunk):
        c = min(per_chunk, candidates - first)
        tokens = unguided_decode(prior, c * n, steps, generator, confidence_noise=confidence_noise, device=y.device,
                                 dtype=dtype)
        with torch.no_grad():
            images = prior.decode_tokens(tokens)
            fit = data_misfit(replicate(run.measurement, c), images, 1.0, 0.0).reshape(c, n)
        images = images.reshape(c, n, *images.shape[1:])
        index = fit.argmin(dim=0)
        chosen, chosen_fit = images[index, torch.arange(n)], fit[index, torch.arange(n)]
        if best is None:
            best, best_fit = chosen, chosen_fit
        else:
            better = chosen_fit < best_fit
            best = torch.where(better.reshape(-1, *([1] * (best.dim() - 1))), chosen, best)
            best_fit = torch.minimum(best_fit, chosen_fit)
    return run.output(best, nfe=steps * candidates, transformer_calls=steps * candidates, decoder_calls=candidates,
                      candidates=candidates, best_misfit=best_fit)


DECLARATION = SamplerDeclaration(
    "best-of-n", best_of_n, default_steps=16, needs={Need.TOKEN_PRIOR}, label="best-of-N",
    ranges={"candidates": Range(1, 100000, integer=True), "confidence_noise": NONNEGATIVE,
            "chunk": Range(1, 100000, integer=True)})
