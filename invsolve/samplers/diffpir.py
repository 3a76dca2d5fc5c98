"""Diffusion plug-and-play image restoration (DiffPIR; Zhu, Zhang, Liang, Cao, Wen, Timofte, Van Gool, CVPRW 2023).

Half-quadratic splitting with the diffusion denoiser as the prior step, one network call per step and no
backpropagation (Algorithm 1 of the paper, in the EDM / VE sigma convention ``x = x0 + sigma n``, where the
paper's ``sigma_bar_t = sqrt(1 - alpha_bar_t) / sqrt(alpha_bar_t)`` is exactly ``sigma``). At each step
``sigma_i -> sigma_{i+1}``:

1. ``x0 = D(x_i, sigma_i)`` (the prior step);
2. ``x0_hat = argmin_z ||y - A z||^2 + rho_i ||z - x0||^2`` with ``rho_i = lam sigma_y^2 / sigma_i^2`` (eq. 13: the
   data step, a proximal map; solved exactly in the operator's SVD basis when it has a structured one or is small,
   by conjugate gradients otherwise);
3. ``eps_hat = (x_i - x0_hat) / sigma_i`` and ``x_{i+1} = x0_hat + sigma_{i+1} (sqrt(1 - zeta) eps_hat + sqrt(zeta) n)``
   (eq. 15: ``zeta`` = 0 is deterministic, 1 draws fresh noise).

Needs a linear operator and Gaussian noise (``sigma_y > 0``: ``rho`` scales with it). Not an exact posterior
sampler (the data step is a MAP step, not a draw): its spread understates the posterior's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from invsolve._validation import positive_int
from invsolve.measurement import Measurement
from invsolve.operators.base import LinearOperator, conjugate_gradient
from invsolve.operators.spectral import has_structured_bases, spectral_decomposition
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, require_gaussian_noise, require_linear, start
from invsolve.samplers.declaration import Need, POSITIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.output import SamplerOutput

#: ``data_solver="auto"`` solves the data step in the SVD basis when the operator has structured bases or at most
#: this many pixels (its dense SVD is then cheap and memoised on the operator), by CG otherwise.
SVD_MAX_PIXELS = 4096
DATA_SOLVERS = ("auto", "svd", "cg")

#: ``prox(x0, rho) = argmin_z ||y - A z||^2 + rho ||z - x0||^2`` for images ``x0 (N, *shape)`` and a scalar ``rho``.
DataProx = Callable[[torch.Tensor, float], torch.Tensor]


def svd_data_prox(operator: LinearOperator, y: torch.Tensor) -> DataProx:
    """The data step in the SVD basis ``A = U S V^T``: ``z = x0 + V diag(s / (s^2 + rho)) U^T (y - A x0)``."""
    U, s, V = spectral_decomposition(operator, like=y)

    def prox(x0: torch.Tensor, rho: float) -> torch.Tensor:
        residual = (y - operator.A(x0)).reshape(x0.shape[0], -1)
        step = V.embed(U.project(residual) * (s / (s.square() + rho)))
        return x0 + step.reshape(x0.shape)

    return prox


def cg_data_prox(operator: LinearOperator, y: torch.Tensor, *, max_iter: int, tol: float) -> DataProx:
    """The data step by conjugate gradients on ``(A^T A + rho I) d = A^T (y - A x0)``, ``z = x0 + d``."""

    def prox(x0: torch.Tensor, rho: float) -> torch.Tensor:
        rhs = operator.A_adjoint(y - operator.A(x0))
        return x0 + conjugate_gradient(lambda d: operator.A_adjoint(operator.A(d)) + rho * d, rhs,
                                       max_iter=max_iter, tol=tol)

    return prox


def diffpir_step(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, sigma_next: float, *, zeta: float,
                 noise: torch.Tensor) -> torch.Tensor:
    """Eq. 15: ``x0_hat + sigma_next (sqrt(1 - zeta) eps_hat + sqrt(zeta) noise)``, ``eps_hat = (x - x0_hat) / sigma``."""
    eps_hat = (x - x0_hat) / sigma
    return x0_hat + sigma_next * (math.sqrt(1 - zeta) * eps_hat + math.sqrt(zeta) * noise)


def diffpir(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
            generator: torch.Generator, callback: Callback | None = None, lam: float = 7.0, zeta: float = 0.3,
            data_solver: str = "auto", cg_max_iter: int = 50, cg_tol: float = 1e-4, rho: float = 7.0) -> SamplerOutput:
    """DiffPIR samples, shape ``(n_samples, B, *x_shape)``; one denoiser call per step, no backward pass.

    Args:
        lam: ``lambda`` of ``rho_i = lam sigma_y^2 / sigma_i^2`` (the paper's range: about 1-25).
        zeta: fresh-noise fraction of each step, in [0, 1] (eq. 15).
        data_solver: ``"svd"`` (exact; structured bases or a dense SVD), ``"cg"`` or ``"auto"``.
        cg_max_iter, cg_tol: the CG data step (relative tolerance on the correction ``A^T (y - A x0)``).
        rho: exponent of the EDM noise schedule.
    """
    op = require_linear(measurement, "DiffPIR")
    sigma_y = require_gaussian_noise(measurement, "DiffPIR")
    if not sigma_y > 0:
        raise ValueError(f"DiffPIR weighs the data step by sigma_y^2, which must be positive; got {sigma_y}")
    if not (isinstance(lam, (int, float)) and lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be a positive number, got {lam!r}")
    if not 0 <= zeta <= 1:
        raise ValueError(f"zeta must lie in [0, 1], got {zeta}")
    if data_solver not in DATA_SOLVERS:
        raise ValueError(f"data_solver must be one of {DATA_SOLVERS}, got {data_solver!r}")
    positive_int(cg_max_iter, "cg_max_iter")
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    if data_solver == "auto":
        data_solver = "svd" if has_structured_bases(op) or math.prod(prior.shape) <= SVD_MAX_PIXELS else "cg"
    y = run.measurement.y
    prox = svd_data_prox(op, y) if data_solver == "svd" else cg_data_prox(op, y, max_iter=cg_max_iter, tol=cg_tol)
    x = run.initial_noise()
    for i, sigma, sigma_next in run.transitions():
        with torch.no_grad():
            x0 = prior.denoise(x, sigma)
        x0_hat = prox(x0, lam * sigma_y**2 / sigma**2)
        x = diffpir_step(x, x0_hat, sigma, sigma_next, zeta=zeta, noise=run.noise())
        run.report(i, sigma, x, x0_hat)
    return run.output(x, nfe=run.n_steps, lam=lam, zeta=zeta, data_solver=data_solver)


DECLARATION = SamplerDeclaration("diffpir", diffpir, default_steps=100, label="DiffPIR",
                                 needs={Need.LINEAR, Need.GAUSSIAN_NOISE},
                                 ranges={"lam": POSITIVE, "zeta": UNIT, "rho": RHO,
                                         "cg_max_iter": Range(1, 10_000, integer=True),
                                         "cg_tol": Range(0, 1, open_high=True)})
