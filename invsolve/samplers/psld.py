"""PSLD: posterior sampling with latent diffusion (Rout, Raoof, Daras, Caramanis, Dimakis, Shakkottai; NeurIPS 2023).

Latent DPS (:mod:`invsolve.samplers.latent_dps`) plus the "gluing" term (Algorithm 2, eq. 8): a latent whose
decoding already agrees with the data on the measured part should be a fixed point of encode(decode) once the
unmeasured part is taken from the decoder. With ``x0_hat = decode(z0_hat)``

    glue(z) = || z0_hat - encode(A^T y + (I - A^T A) x0_hat) ||^2,

and the step adds ``- gamma * grad_z glue`` (normalised by ``||glue||^{1/2}``, i.e. ``grad ||.||``, as the DPS
term is) to latent DPS's update. ``A^T y + (I - A^T A) x`` is the projection onto the data for operators with
``A A^T = I`` (inpainting, masked orthonormal Fourier MRI); for others it is the authors' formula as written.
Cost per step: one denoiser call, two decoder calls, one encoder call, one backward pass through all of them.
"""

from __future__ import annotations

import math

import torch

from invsolve.measurement import Measurement
from invsolve.samplers._common import Callback, require_linear, start
from invsolve.samplers.declaration import NONNEGATIVE, RHO, UNIT, Need, SamplerDeclaration
from invsolve.samplers.dps import check_dps_settings, dps_chain
from invsolve.samplers.output import SamplerOutput


def psld_guidance(measurement: Measurement, prior, z: torch.Tensor, sigma: float, *, zeta: float, gamma: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z0_hat, grad_z [zeta ||y - A x0_hat|| + gamma ||glue||] / zeta, ||y - A x0_hat||)`` per item (the
    gradient divided by ``zeta`` so that :func:`~invsolve.samplers.dps.dps_step` applies both with its step)."""
    op = measurement.operator
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        z0 = prior.denoise(z, sigma)
        x0 = prior.decode(z0)
        r = measurement.residual(x0)
        data = r.reshape(r.shape[0], -1).square().sum(dim=1).clamp_min(1e-30).sqrt()
        objective = data.sum()
        if gamma > 0:
            y = measurement.y.expand(x0.shape[0], *measurement.y.shape[1:]) if measurement.batch_size == 1 \
                else measurement.y
            glued = op.A_adjoint(y) + x0 - op.A_adjoint(op.A(x0))
            gap = (z0 - prior.encode(glued)).reshape(z0.shape[0], -1).square().sum(dim=1).clamp_min(1e-30).sqrt()
            objective = objective + (gamma / max(zeta, 1e-30)) * gap.sum()
        (grad,) = torch.autograd.grad(objective, z)
    return z0.detach(), grad, data.detach()


def psld(measurement: Measurement, prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
         generator: torch.Generator, callback: Callback | None = None, zeta: float = 1.0, gamma: float = 0.1,
         eta: float = 1.0, step_scaling: str = "vp", rho: float = 7.0) -> SamplerOutput:
    """PSLD posterior samples (decoded images), shape ``(n_samples, B, *image_shape)``.

    Args:
        prior: a :class:`~invsolve.priors.latent.LatentPrior`.
        zeta: the DPS step on the data term (:func:`invsolve.samplers.dps.dps`).
        gamma: the step on the gluing term (0: latent DPS).
    """
    require_linear(measurement, "PSLD")
    check_dps_settings(zeta, step_scaling)
    if not 0 <= gamma < math.inf:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    z = dps_chain(run, lambda m, v, s: psld_guidance(m, prior, v, s, zeta=zeta, gamma=gamma), zeta=zeta, eta=eta,
                  step_scaling=step_scaling)
    with torch.no_grad():
        x = prior.decode(z)
    n = run.n_steps
    return run.output(x, nfe=n, decoder_calls=n + 1, encoder_calls=n if gamma > 0 else 0, backward_passes=n,
                      zeta=zeta, gamma=gamma)


DECLARATION = SamplerDeclaration("psld", psld, default_steps=100, needs={Need.LATENT_PRIOR, Need.LINEAR},
                                 label="PSLD", ranges={"zeta": NONNEGATIVE, "gamma": NONNEGATIVE, "eta": UNIT,
                                                       "rho": RHO})
