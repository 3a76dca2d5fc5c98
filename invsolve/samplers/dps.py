"""Diffusion posterior sampling (DPS; Chung, Kim, Mccann, Klasky, Ye, ICLR 2023).

Algorithm 1 of the paper, moved to the EDM / VE sigma convention. At each step
``sigma_i -> sigma_{i+1}``:

1. ``x0_hat = D(x_i, sigma_i)`` with the graph kept (one denoiser call);
2. ``x' = `` the unconditional step from ``x_i`` with ``x0_hat`` (DDIM in VE form,
   :func:`invsolve.samplers.edm.ddim_step`; ``eta = 1`` is the ancestral DDPM step of the paper);
3. ``x_{i+1} = x' - zeta_i c_i grad_{x_i} ||y - A(x0_hat)||^2`` with ``zeta_i = zeta / ||y - A(x0_hat)||``
   (the paper's step-size rule, Appendix C), the gradient taken through the denoiser by autograd.

Equivalently the update is ``2 zeta c_i grad ||y - A(x0_hat)||``; the authors' code writes it as
``scale * grad ||.||``, so their ``scale`` is ``2 zeta``. The factor ``c_i`` translates the step:
with ``step_scaling="vp"`` (default) ``c_i = sqrt((1 + sigma_i^2)(1 + sigma_{i+1}^2))``, which makes the
update identical to the paper's step taken in variance-preserving coordinates
(``x_vp = x / sqrt(1 + sigma^2)``); with ``"ve"`` ``c_i = 1`` (the step taken directly on ``x``).

Needs only ``A`` and autograd: nonlinear operators work, and so does ``sigma_y = 0`` (the
noise level is not used). The norms are per sample.
"""

from __future__ import annotations

import math
import torch

from invsolve.measurement import Measurement
from invsolve.priors.base import Prior
from invsolve.samplers._common import Callback, start
from invsolve.samplers.declaration import NONNEGATIVE, RHO, SamplerDeclaration, UNIT
from invsolve.samplers.edm import ddim_step
from invsolve.samplers.output import SamplerOutput


def dps_guidance(
    measurement: Measurement, prior: Prior, x: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x0_hat, grad_x ||y - A(x0_hat(x))||, ||y - A(x0_hat)||)`` per item (one denoiser call + one VJP)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0 = prior.denoise(x, sigma)
        r = measurement.residual(x0)
        sq = r.reshape(r.shape[0], -1).square().sum(dim=1)
        norm = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
        (grad,) = torch.autograd.grad(norm.sum(), x)
    return x0.detach(), grad, norm.detach()


def dps_step(x, x0, grad_norm, sigma: float, sigma_next: float, *, zeta: float, eta: float,
             step_scaling: str, noise: torch.Tensor | None) -> torch.Tensor:
    """``x_{i+1} = ddim_step(x, x0_hat) - 2 zeta c_i grad ||y - A x0_hat||`` (Alg. 1, lines 7-8)."""
    c = math.sqrt((1 + sigma**2) * (1 + sigma_next**2)) if step_scaling == "vp" else 1.0
    return ddim_step(x, x0, sigma, sigma_next, eta, noise) - (2.0 * zeta * c) * grad_norm


def check_dps_settings(zeta: float, step_scaling: str) -> None:
    if step_scaling not in ("vp", "ve"):
        raise ValueError(f"step_scaling must be 'vp' or 've', got {step_scaling!r}")
    if not 0 <= zeta < math.inf:
        raise ValueError(f"zeta must be a finite number >= 0, got {zeta}")


def dps_chain(run, guidance, *, zeta: float, eta: float, step_scaling: str) -> torch.Tensor:
    """The DPS loop over ``run``'s noise levels with ``guidance(measurement, x, sigma) -> (x0_hat, grad, norm)``
    (pixel DPS: :func:`dps_guidance`; the latent samplers pass theirs). Returns the final state."""
    x = run.initial_noise()
    for i, sigma, sigma_next in run.transitions():
        x0, grad, norm = guidance(run.measurement, x, sigma)
        noise = run.noise() if eta > 0 and sigma_next > 0 else None
        x = dps_step(x.detach(), x0, grad, sigma, sigma_next, zeta=zeta, eta=eta, step_scaling=step_scaling,
                     noise=noise)
        run.report(i, sigma, x, x0, residual_norm=norm)
    return x


def dps(measurement: Measurement, prior: Prior, *, steps: int | None = 1000, sigmas=None, n_samples: int = 1,
        generator: torch.Generator, callback: Callback | None = None, zeta: float = 1.0, eta: float = 1.0,
        step_scaling: str = "vp", rho: float = 7.0) -> SamplerOutput:
    """DPS posterior samples, shape ``(n_samples, B, *x_shape)``.

    Args:
        steps / sigmas: the EDM schedule over the prior's range (``steps``) or explicit noise levels.
        zeta: the paper's step size ``zeta'`` in ``zeta_i = zeta' / ||y - A(x0_hat)||``.
        eta: DDIM stochasticity of the unconditional part (1 = ancestral, as in the paper).
        step_scaling: ``"vp"`` (the paper's step in VP coordinates) or ``"ve"``; see the module docstring.

    One denoiser call (and one backward pass) per step: ``nfe = steps``.
    """
    check_dps_settings(zeta, step_scaling)
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    x = dps_chain(run, lambda m, v, s: dps_guidance(m, prior, v, s), zeta=zeta, eta=eta, step_scaling=step_scaling)
    return run.output(x, nfe=run.n_steps, zeta=zeta, step_scaling=step_scaling)


DECLARATION = SamplerDeclaration("dps", dps, default_steps=100, label="DPS", demo_position=1,
                                 ranges={"zeta": NONNEGATIVE, "eta": UNIT, "rho": RHO})
