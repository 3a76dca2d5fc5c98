"""Latent DPS: diffusion posterior sampling in the latent space of an autoencoder.

DPS (Chung et al., ICLR 2023, Algorithm 1; :mod:`invsolve.samplers.dps`) with the data term read through the
decoder, as in the latent baselines of PSLD (Rout et al., NeurIPS 2023, eq. 6, "DPS in the latent space") and
STSL (Rout et al., CVPR 2024). At each step ``sigma_i -> sigma_{i+1}`` of the latent diffusion:

1. ``z0_hat = D_z(z_i, sigma_i)`` (the latent denoiser, graph kept);
2. ``x0_hat = decode(z0_hat)`` (graph kept);
3. ``z_{i+1} = ddim_step(z_i, z0_hat) - 2 zeta c_i grad_{z_i} ||y - A(x0_hat)||`` (the step-size rule of DPS,
   :func:`invsolve.samplers.dps.dps_step`), the gradient taken through decoder and denoiser.

The samples are ``decode(z_N)``. Cost per step: one latent denoiser call, one decoder call, one backward pass
through both; ``nfe`` counts denoiser calls and ``diagnostics`` the decoder calls and backward passes.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.samplers._common import Callback, start
from invsolve.samplers.declaration import NONNEGATIVE, RHO, UNIT, Need, SamplerDeclaration
from invsolve.samplers.dps import check_dps_settings, dps_chain
from invsolve.samplers.output import SamplerOutput


def latent_dps_guidance(measurement: Measurement, prior, z: torch.Tensor, sigma: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z0_hat, grad_z ||y - A(decode(z0_hat(z)))||, ||y - A(decode(z0_hat))||)`` per item."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        z0 = prior.denoise(z, sigma)
        r = measurement.residual(prior.decode(z0))
        sq = r.reshape(r.shape[0], -1).square().sum(dim=1)
        norm = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
        (grad,) = torch.autograd.grad(norm.sum(), z)
    return z0.detach(), grad, norm.detach()


def latent_dps(measurement: Measurement, prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
               generator: torch.Generator, callback: Callback | None = None, zeta: float = 1.0, eta: float = 1.0,
               step_scaling: str = "vp", rho: float = 7.0) -> SamplerOutput:
    """Latent DPS posterior samples (decoded images), shape ``(n_samples, B, *image_shape)``.

    Args:
        prior: a :class:`~invsolve.priors.latent.LatentPrior`.
        zeta, eta, step_scaling, rho: as for :func:`invsolve.samplers.dps.dps`.
    """
    check_dps_settings(zeta, step_scaling)
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    z = dps_chain(run, lambda m, v, s: latent_dps_guidance(m, prior, v, s), zeta=zeta, eta=eta,
                  step_scaling=step_scaling)
    with torch.no_grad():
        x = prior.decode(z)
    return run.output(x, nfe=run.n_steps, decoder_calls=run.n_steps + 1, backward_passes=run.n_steps, zeta=zeta)


DECLARATION = SamplerDeclaration("latent-dps", latent_dps, default_steps=100, needs={Need.LATENT_PRIOR},
                                 label="latent DPS", ranges={"zeta": NONNEGATIVE, "eta": UNIT, "rho": RHO})
