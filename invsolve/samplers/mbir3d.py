"""DiffusionMBIR: 3D reconstruction with a 2D diffusion prior (Chung, Ryu, McCann, Klasky, Ye, CVPR 2023).

The volume ``x (B, C, D, H, W)`` is sampled with a 2D prior acting on its axial slices
(:class:`~invsolve.priors.slice_stack.SliceStackPrior`, ``chunk`` slices per network call). At every
reverse-diffusion step ADMM iterations couple the slices through a total-variation prior along ``z``
(Algorithm 1 and eq. 10-12 of the paper)::

    x <- argmin_x 1/2 ||y - A x||^2 + admm_rho/2 ||D_z x - z + u||^2     (cg_iterations of CG from x)
    z <- soft_threshold(D_z x + u, lam / admm_rho)
    u <- u + D_z x - z

``z`` and ``u`` are kept across diffusion steps. The paper applies one such iteration to the noisy
iterate with one CG step over 2000 steps; with the 50-100 steps affordable here that literal form
(``consistency="iterate"``) breaks down when CG is given several iterations (4 dB on a smoke volume:
the denoiser then sees measured components without their noise). The default applies the ADMM
iterations to the denoised estimate before the DDIM step (``consistency="denoised"``, as the authors'
decomposed diffusion sampler does, Chung et al., ICLR 2024), and returns the last data-consistent
estimate. ``lam = 0`` makes the ADMM iteration a plain data-consistency step and the method the
slice-wise 2D baseline with a CG data term; ``lam_xy > 0`` adds anisotropic in-plane TV to the same
splitting. ``consistency="denoised", epsilon="network"`` is DDS, declared with its own defaults as the fast
path :mod:`invsolve.samplers.dds3d`. Measured: ``experiments/results/mbir3d_brain.md`` (brains, and quality
against steps) and ``experiments/results/mbir3d_quality.md`` (ellipsoids, the TV-favoured control).
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from invsolve._validation import positive_int
from invsolve.measurement import Measurement
from invsolve.operators.base import LinearOperator, conjugate_gradient
from invsolve.operators.finite_difference import finite_difference, finite_difference_adjoint
from invsolve.priors.base import Prior
from invsolve.priors.slice_stack import SliceStackPrior
from invsolve.samplers._common import Callback, require_linear, start
from invsolve.samplers.declaration import NONNEGATIVE, Need, POSITIVE, RHO, Range, SamplerDeclaration, UNIT
from invsolve.samplers.edm import ddim_step
from invsolve.samplers.output import SamplerOutput

DEPTH_AXIS = -3
IN_PLANE_AXES = (-2, -1)


def diff_z(x: torch.Tensor) -> torch.Tensor:
    """Forward difference along depth (the TV-z operator ``D_z`` of the paper), zero at the last slice."""
    return finite_difference(x, (DEPTH_AXIS,))[0]


def diff_z_adjoint(p: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`diff_z`."""
    return finite_difference_adjoint(p[None], (DEPTH_AXIS,))


def soft_threshold(v: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The proximal map of ``threshold * ||.||_1`` (``threshold`` may broadcast against ``v``)."""
    return torch.sign(v) * (v.abs() - threshold).clamp_min(0)


def admm_tv_step(x: torch.Tensor, z: torch.Tensor, u: torch.Tensor, operator: LinearOperator, y: torch.Tensor, *,
                 weights: dict[int, float], admm_rho: float, cg_iterations: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ADMM iteration for ``1/2 ||y - A x||^2 + sum_a weights[a] ||D_a x||_1`` (anisotropic TV).

    ``z`` and ``u`` hold one difference image per axis of ``weights``, stacked on a leading dimension
    (``(len(weights), *x.shape)``); with ``weights = {-3: lam}`` this is eq. 10-12 of DiffusionMBIR.
    A zero weight keeps the splitting but thresholds nothing (plain data consistency along that axis).
    """
    axes = list(weights)
    rhs = operator.A_adjoint(y) + admm_rho * finite_difference_adjoint(z - u, axes)

    def normal(v: torch.Tensor) -> torch.Tensor:
        return operator.A_adjoint(operator.A(v)) + admm_rho * finite_difference_adjoint(finite_difference(v, axes), axes)

    x = conjugate_gradient(normal, rhs, x, max_iter=cg_iterations, tol=0.0)
    g = finite_difference(x, axes)
    thresholds = torch.tensor([weights[a] / admm_rho for a in axes], dtype=g.dtype, device=g.device)
    z = soft_threshold(g + u, thresholds.reshape(-1, *([1] * x.dim())))
    u = u + g - z
    return x, z, u


def mbir3d(measurement: Measurement, prior: SliceStackPrior, *, steps: int | None = 100, sigmas=None,
           n_samples: int = 1, generator: torch.Generator, callback: Callback | None = None, lam: float = 1e-3,
           lam_xy: float = 0.0, admm_rho: float = 2e-2, operator_norm: float | None = None, cg_iterations: int = 5,
           admm_iterations: int = 2, corrector_steps: int = 0, snr: float = 0.16, eta: float = 1.0,
           rho: float = 7.0, consistency: str = "denoised", epsilon: str = "consistent") -> SamplerOutput:
    """DiffusionMBIR samples ``(n_samples, B, C, D, H, W)`` of a volume measured by a linear operator.

    Args:
        prior: a :class:`SliceStackPrior` (the 2D prior over the volume's slices).
        lam: TV-z weight relative to ``||A||^2`` (the objective is ``1/2 ||y - A x||^2 + lam ||A||^2 ||D_z x||_1``,
            so one value serves operators of any scale: ``ParallelBeamCT3D`` with 8 views has ``||A||^2 ~ 500``,
            the orthonormal-FFT MRI operators 1); ``0`` turns the coupling off. The paper's absolute
            weights (CT: ``lam = 0.04``, ``rho = 10``) belong to its own operator scaling.
        lam_xy: in-plane TV weight (``D_y``, ``D_x``), relative like ``lam``; 0 (default) is the paper's
            TV-z only, positive values add anisotropic in-plane TV to the same ADMM iteration.
        admm_rho: ADMM penalty, relative to ``||A||^2`` like ``lam``.
        operator_norm: ``||A||`` if known (default: power iteration, 50 products with ``A^T A``, started from a
            draw of ``generator``).
        cg_iterations: CG iterations of the data-term update per diffusion step (paper: 1, over 2000 steps;
            with 50-100 steps 5 are needed: 3 lost 2 dB on the tuning volume, 10 lost 1.6 dB to noise fitting).
        admm_iterations: ADMM iterations per diffusion step (paper: 1 over 2000 steps; at 50 steps, CT 8 views,
            2 gained 2 dB over 1 on the tuning volume).
        corrector_steps: Langevin corrector steps after each predictor step (Song et al. 2021, step size
            from the signal-to-noise ratio ``snr``); 0 = predictor only.
        eta: DDIM stochasticity of the predictor (1 = ancestral).
        rho: exponent of the EDM noise schedule (as for every sampler).
        consistency: where the ADMM iteration acts: ``"iterate"`` (the paper: on the noisy iterate after
            the predictor-corrector) or ``"denoised"`` (on the denoised estimate before the DDIM step, as in
            the authors' later decomposed diffusion sampler, Chung et al., ICLR 2024; the last step still
            ends with an ADMM iteration on the final iterate).
        epsilon: the noise direction of the DDIM step when ``consistency="denoised"``: ``"consistent"``
            (``(x - x0') / sigma`` from the data-consistent estimate ``x0'``, so the correction enters with weight
            ``1 - sigma_next / sigma``) or ``"network"`` (the network's own ``(x - x0) / sigma``, as DDS eq. 13
            keeps it, so the correction ``x0' - x0`` is carried into the next iterate in full).

    ``nfe`` counts 2D-network evaluations per volume slice: ``steps * (1 + corrector_steps)``.
    """
    if not isinstance(prior, SliceStackPrior):
        raise TypeError(f"prior must be a SliceStackPrior (a 2D prior over the slices), got {type(prior).__name__}")
    op = require_linear(measurement, "mbir3d (CG on the normal equations)")
    for name, value in (("lam", lam), ("lam_xy", lam_xy), ("admm_rho", admm_rho), ("snr", snr)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not admm_rho > 0:
        raise ValueError("admm_rho must be > 0")
    if consistency not in ("iterate", "denoised"):
        raise ValueError(f"consistency must be 'iterate' or 'denoised', got {consistency!r}")
    if epsilon not in ("consistent", "network"):
        raise ValueError(f"epsilon must be 'consistent' or 'network', got {epsilon!r}")
    for name, value in (("cg_iterations", cg_iterations), ("admm_iterations", admm_iterations)):
        positive_int(value, name)
    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback)
    y = run.measurement.y
    if operator_norm is None:
        operator_norm = op.operator_norm(dtype=y.dtype, device=y.device, generator=generator)
    if not 0 < operator_norm < math.inf:
        raise ValueError(f"operator_norm must be a finite number > 0, got {operator_norm}")
    scale = operator_norm**2
    weights = {DEPTH_AXIS: lam * scale, **({a: lam_xy * scale for a in IN_PLANE_AXES} if lam_xy > 0 else {})}
    admm = {"weights": weights, "admm_rho": admm_rho * scale, "cg_iterations": cg_iterations}
    if y.shape[0] != run.n_items:
        y = y.expand(run.n_items, *y.shape[1:])
    x = run.initial_noise()
    z = u = torch.zeros((len(weights), *x.shape), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for i, sigma, sigma_next in run.transitions():
            x0 = prior.denoise(x, sigma)
            shift = 0.0
            if consistency == "denoised":
                x0_network = x0
                for _ in range(admm_iterations):
                    x0, z, u = admm_tv_step(x0, z, u, op, y, **admm)
                if epsilon == "network":  # x0' + c (x - x0) / sigma == ddim_step(x + x0' - x0, x0', ...)
                    shift = x0 - x0_network
            x = ddim_step(x + shift, x0, sigma, sigma_next, eta, run.noise() if eta > 0 and sigma_next > 0 else None)
            for _ in range(corrector_steps if sigma_next > 0 else 0):
                x = langevin_corrector(x, (prior.denoise(x, sigma_next) - x) / sigma_next**2, snr, run.noise())
            if consistency == "iterate":
                for _ in range(admm_iterations):
                    x, z, u = admm_tv_step(x, z, u, op, y, **admm)
            run.report(i, sigma, x, x0)
    return run.output(x, nfe=run.n_steps * (1 + corrector_steps), tv_weights_absolute=weights,
                      rho_absolute=admm["admm_rho"], operator_norm=operator_norm, cg_iterations=cg_iterations,
                      admm_iterations=admm_iterations, chunk=prior.chunk)


def langevin_corrector(x: torch.Tensor, score: torch.Tensor, snr: float, noise: torch.Tensor) -> torch.Tensor:
    """One Langevin corrector step of Song et al. (2021, Alg. 5) with the step size set by ``snr``."""
    step = 2 * (snr * noise.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1).clamp_min(1e-12)) ** 2
    step = step.reshape(-1, *([1] * (x.dim() - 1)))
    return x + step * score + (2 * step).sqrt() * noise


def slice_prior(measurement, prior: Prior, *, chunk: int = 12) -> SliceStackPrior:
    """The preparation of ``mbir3d``: the 2D prior over the volume's axial slices, ``chunk`` per network call."""
    if isinstance(prior, SliceStackPrior):
        return prior
    return SliceStackPrior(prior, measurement.x_shape[1], chunk=chunk)


#: Slices per network call of the preparation (``slice_prior``).
CHUNK = Range(1, 2**31, integer=True)
#: The settings ``mbir3d`` and its fast path share, with their ranges.
ADMM_RANGES = {"lam": NONNEGATIVE, "lam_xy": NONNEGATIVE, "admm_rho": POSITIVE, "operator_norm": POSITIVE,
               "cg_iterations": Range(1, 1000, integer=True), "admm_iterations": Range(1, 100, integer=True),
               "eta": UNIT, "rho": RHO, "chunk": CHUNK}

DECLARATION = SamplerDeclaration("mbir3d", mbir3d, default_steps=100, needs={Need.VOLUME, Need.LINEAR},
                                 label="DiffusionMBIR", prepare=slice_prior, preparation_settings=("chunk",),
                                 ranges={**ADMM_RANGES, "corrector_steps": Range(0, 100, integer=True),
                                         "snr": NONNEGATIVE})
