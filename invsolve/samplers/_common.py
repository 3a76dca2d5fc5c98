"""Helpers shared by the samplers: argument checks, batching of samples x measurements, noise draws."""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.priors.base import Prior


def check_generator(generator: torch.Generator | None) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "samplers need an explicit torch.Generator (generator=torch.Generator().manual_seed(seed)), "
            f"got {type(generator).__name__}"
        )
    return generator


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
    if tuple(measurement.x_shape) != tuple(prior.shape):
        raise ValueError(
            f"the operator acts on x of shape {measurement.x_shape} but the prior models shape {prior.shape}"
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
