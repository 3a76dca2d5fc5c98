"""What every sampler does first and last: check its inputs, lay out the noise levels and the batch of
samples x measurements, draw noise from its generator, report steps, and package the :class:`SamplerOutput`.

Samplers stay plain functions; :func:`start` replaces the prelude each of them used to repeat::

    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples,
                generator=generator, callback=callback)
    x = run.initial_noise()
    for i, sigma, sigma_next in run.transitions():
        ...
        run.report(i, sigma, x, denoised)
    return run.output(x, nfe=run.n_steps)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from invsolve._validation import require_generator
from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.priors.base import Prior
from invsolve.samplers.output import SamplerOutput, StepInfo

Callback = Callable[[StepInfo], None]


def check_generator(generator: torch.Generator | None) -> torch.Generator:
    return require_generator(generator)


def check_prior(prior: Prior) -> Prior:
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be an invsolve Prior, got {type(prior).__name__}")
    return prior


def check_n_samples(n_samples: int) -> int:
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return n_samples


def check_pair(measurement: Measurement, prior: Prior) -> None:
    if not isinstance(measurement, Measurement):
        raise TypeError(f"measurement must be an invsolve.Measurement, got {type(measurement).__name__}")
    check_prior(prior)
    images = tuple(getattr(prior, "image_shape", prior.shape))  # a latent prior decodes to images of this shape
    if tuple(measurement.x_shape) != images:
        raise ValueError(
            f"the operator acts on x of shape {measurement.x_shape} but the prior models shape {images}"
        )


def require_linear(measurement: Measurement, sampler: str) -> LinearOperator:
    op = measurement.operator
    if not isinstance(op, LinearOperator):
        raise TypeError(
            f"{sampler} needs a linear operator (an invsolve LinearOperator with A_adjoint), "
            f"got {type(op).__name__}"
        )
    return op


def require_gaussian_noise(measurement: Measurement, sampler: str) -> float:
    if not isinstance(measurement.noise, GaussianNoise):
        raise TypeError(f"{sampler} needs GaussianNoise, got {measurement.noise!r}")
    return measurement.noise.sigma


def replicate(measurement: Measurement, n_samples: int) -> Measurement:
    """The measurement with ``y`` repeated so that item ``s * B + b`` is sample ``s`` of measurement ``b``."""
    if n_samples == 1 or measurement.batch_size == 1:
        return measurement  # y broadcasts (B == 1) or matches already
    y = measurement.y.repeat(n_samples, *([1] * (measurement.y.dim() - 1)))
    return Measurement(measurement.operator, measurement.noise, y)


def randn(shape, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


def split_samples(x: torch.Tensor, n_samples: int, batch: int) -> torch.Tensor:
    """``(n_samples * B, *shape)`` -> ``(n_samples, B, *shape)``."""
    return x.reshape(n_samples, batch, *x.shape[1:])


@dataclass
class SamplingRun:
    """The checked set-up of one sampler call (see the module docstring).

    ``measurement`` is replicated to ``n_samples * batch`` items (item ``s * B + b`` is sample ``s`` of
    measurement ``b``); ``sigmas`` are plain floats, ``sigmas[0]`` the start and ``sigmas[-1]`` the end.
    """

    measurement: Measurement
    prior: Prior
    sigmas: list[float]
    n_samples: int
    batch: int
    generator: torch.Generator
    callback: Callback | None

    @property
    def n_steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def n_items(self) -> int:
        return self.n_samples * self.batch

    def transitions(self) -> Iterator[tuple[int, float, float]]:
        """``(i, sigma_i, sigma_{i+1})`` for every step."""
        for i in range(self.n_steps):
            yield i, self.sigmas[i], self.sigmas[i + 1]

    def noise(self, shape=None) -> torch.Tensor:
        """Standard normal noise from the run's generator, of ``shape`` (default: the batch of images)."""
        y = self.measurement.y
        return randn(shape if shape is not None else (self.n_items, *self.prior.shape), self.generator, y.dtype,
                     y.device)

    def initial_noise(self) -> torch.Tensor:
        """``x ~ N(0, sigmas[0]^2 I)`` for every item."""
        return self.sigmas[0] * self.noise()

    def report(self, step: int, sigma: float, x: torch.Tensor, denoised: torch.Tensor | None = None,
               **extra) -> None:
        if self.callback is not None:
            self.callback(StepInfo(step=step, total_steps=self.n_steps, sigma=sigma, x=x, denoised=denoised,
                                   extra=extra))

    def output(self, x: torch.Tensor, *, nfe: int, log_weights: torch.Tensor | None = None,
               **diagnostics) -> SamplerOutput:
        """``x (n_items, ...)`` as samples ``(n_samples, B, ...)``; ``diagnostics`` also records the sigmas."""
        return SamplerOutput(samples=split_samples(x.detach(), self.n_samples, self.batch), nfe=nfe,
                             log_weights=log_weights,
                             diagnostics={"sigmas": torch.tensor(self.sigmas, dtype=torch.float64), **diagnostics})


def start(measurement: Measurement, prior: Prior, *, steps: int | None, sigmas, rho: float, n_samples: int,
          generator: torch.Generator, callback: Callback | None = None, schedule=None) -> SamplingRun:
    """Check the common arguments and lay out a :class:`SamplingRun`.

    ``schedule(prior, steps, sigmas, rho)`` gives the noise levels (default: the EDM schedule of
    :func:`invsolve.samplers.edm.schedule`).
    """
    check_pair(measurement, prior)
    check_generator(generator)
    check_n_samples(n_samples)
    if schedule is None:
        from invsolve.samplers.edm import schedule
    levels = schedule(prior, steps, sigmas, rho)
    # one read of the whole schedule (a tensor's values one by one would be a host read per level)
    sig = [float(s) for s in (levels.tolist() if isinstance(levels, torch.Tensor) else levels)]
    return SamplingRun(replicate(measurement, n_samples), prior, sig, n_samples, measurement.batch_size, generator,
                       callback)
