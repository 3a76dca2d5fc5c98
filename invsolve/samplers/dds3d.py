"""DDS: the Decomposed Diffusion Sampler for volumes (Chung, Lee, Ye, ICLR 2024), the fast path of DiffusionMBIR.

DiffusionMBIR (:mod:`invsolve.samplers.mbir3d`) enforces the data on the noisy iterate, one CG step per
diffusion step, and needs about 2000 steps. DDS observes that the denoised estimate ``x0 = D(x_t, sigma)``
lies near the clean data manifold, so a few Krylov (CG) iterations of data consistency *on x0*, started
from ``x0``, stay on its tangent space (their Proposition 2, eq. 12), and the DDIM update then reuses the
network's noise estimate (eq. 13)::

    x0  = D(x_t, sigma_t)
    x0' = ADMM-TV(x0)      (``admm_iterations`` of ``admm_tv_step``: CG on 1/2 ||y - A x||^2 + rho/2 ||D_z x - z + u||^2
                            from x0, then the TV-z shrinkage, as DDS does for 3D, its Section 4.3)
    x_t' = x0' + c (x_t - x0) / sigma_t + s eps        (DDIM with stochasticity eta; c, s as in ``ddim_step``)

That is ``mbir3d(..., consistency="denoised", epsilon="network")``; this module declares it with the
defaults of the DDS paper (``eta = 0.85``, 5 CG iterations) at 50 steps instead of DiffusionMBIR's
thousands. Quality against the number of steps, and the settings chosen per problem:
``experiments/results/mbir3d_brain.md``.
"""

from __future__ import annotations

import torch

from invsolve.measurement import Measurement
from invsolve.priors.slice_stack import SliceStackPrior
from invsolve.samplers._common import Callback
from invsolve.samplers.declaration import Need, SamplerDeclaration
from invsolve.samplers.mbir3d import ADMM_RANGES, mbir3d, slice_prior
from invsolve.samplers.output import SamplerOutput

DEFAULT_STEPS = 50


def dds3d(measurement: Measurement, prior: SliceStackPrior, *, steps: int | None = DEFAULT_STEPS, sigmas=None,
          n_samples: int = 1, generator: torch.Generator, callback: Callback | None = None, lam: float = 1e-3,
          lam_xy: float = 0.0, admm_rho: float = 2e-2, operator_norm: float | None = None, cg_iterations: int = 5,
          admm_iterations: int = 2, eta: float = 0.85, rho: float = 7.0) -> SamplerOutput:
    """DDS samples ``(n_samples, B, C, D, H, W)`` of a volume measured by a linear operator.

    The settings are those of :func:`~invsolve.samplers.mbir3d.mbir3d` (``lam`` and ``lam_xy`` relative to
    ``||A||^2``); ``eta`` is the DDIM stochasticity (DDS: 0.85). ``nfe`` counts 2D-network evaluations per slice
    (``steps``).
    """
    return mbir3d(measurement, prior, steps=steps, sigmas=sigmas, n_samples=n_samples, generator=generator,
                  callback=callback, lam=lam, lam_xy=lam_xy, admm_rho=admm_rho, operator_norm=operator_norm,
                  cg_iterations=cg_iterations, admm_iterations=admm_iterations, eta=eta, rho=rho,
                  consistency="denoised", epsilon="network")


DECLARATION = SamplerDeclaration("dds3d", dds3d, default_steps=DEFAULT_STEPS, needs={Need.VOLUME, Need.LINEAR},
                                 label="DDS (3D)", prepare=slice_prior, preparation_settings=("chunk",),
                                 ranges=ADMM_RANGES)
