"""The exact posterior sampler for Gaussian and Gaussian-mixture priors (the reference of every comparison).

Draws from the closed-form posterior mixture of :mod:`invsolve.exact_posterior`
(linear operator, Gaussian noise, ``sigma_y >= 0``); no denoiser calls. The exact
``log p(y)`` is returned in ``diagnostics["log_evidence"]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from invsolve.exact_posterior import exact_posterior
from invsolve.measurement import Measurement
from invsolve.priors.gaussian import GaussianMixturePrior
from invsolve.samplers._common import check_generator, check_n_samples, check_pair
from invsolve.samplers.declaration import Need, SamplerDeclaration
from invsolve.samplers.output import SamplerOutput, StepInfo


def exact(measurement: Measurement, prior: GaussianMixturePrior, *, steps: int | None = None, sigmas=None,
          n_samples: int = 1, generator: torch.Generator, callback: Callable[[StepInfo], None] | None = None
          ) -> SamplerOutput:
    """``n_samples`` exact posterior draws per measurement, shape ``(n_samples, B, *x_shape)``.

    ``steps``/``sigmas`` are accepted for the common signature and ignored. Needs a
    :class:`~invsolve.priors.GaussianMixturePrior` (or ``GaussianPrior``), a linear operator
    and Gaussian noise.
    """
    check_pair(measurement, prior)
    check_generator(generator)
    check_n_samples(n_samples)
    post = exact_posterior(measurement, prior)
    samples = post.sample(n_samples, generator, dtype=measurement.y.dtype).to(measurement.y.device)
    if callback is not None:
        callback(StepInfo(step=0, total_steps=1, sigma=0.0, x=samples.reshape(-1, *prior.shape)))
    return SamplerOutput(samples=samples, nfe=0, diagnostics={"log_evidence": post.log_evidence, "posterior": post})


DECLARATION = SamplerDeclaration("exact", exact, default_steps=1,
                                 needs={Need.LINEAR, Need.GAUSSIAN_NOISE, Need.EXACT_PRIOR}, label="Exact posterior")
