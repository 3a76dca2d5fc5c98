"""RED-Diff (Mardani, Song, Kautz, Vahdat, "A Variational Perspective on Solving Inverse Problems
with Diffusion Models", ICLR 2024, arXiv:2305.04391).

The posterior is approximated by ``q(x0 | y) = N(mu, s^2 I)`` and ``KL(q || p(x0 | y))`` is minimised
over ``mu`` in the limit ``s -> 0``. The prior part of the KL becomes a score-matching regulariser over
the diffusion noise levels, so the objective is (the paper's variational objective, VE form)

    min_mu  data_weight ||y - A(mu)||^2 / 2  +  lam * E_{sigma, eps}[ w(sigma) <sg(eps_hat - eps), mu> ],

with ``x = mu + sigma eps``, ``eps_hat = (x - D(x, sigma)) / sigma`` the denoiser's noise prediction
and ``sg`` stop-gradient: no backpropagation through the network. Algorithm 1 of the paper: each step
draws ``eps``, calls the denoiser once, and takes one Adam step on ``mu`` with the gradient

    data_weight * J_A(mu)^T (A(mu) - y)  +  lam * w(sigma) * (eps_hat - eps).

VE form: the paper's VP state ``x_t = sqrt(abar_t) mu + sqrt(1 - abar_t) eps`` is ``sqrt(abar_t)`` times
``mu + sigma_t eps`` with ``sigma_t = sqrt((1 - abar_t) / abar_t)``, and the network's noise prediction
is the same for both, so ``eps_hat`` above is the paper's ``eps_theta(x_t; t)``. Since
``eps_hat - eps = (mu - D(x, sigma)) / sigma`` exactly, it is computed that way (no cancellation at
large sigma). With the default inverse-SNR weighting (``w = sigma``) the regulariser's gradient is
``lam (mu - D(mu + sigma eps, sigma))``: regularisation by denoising (RED) with the denoisers of all
noise levels.

Conventions chosen here (the authors' code, NVlabs/RED-diff ``algos/reddiff.py``, is the reference):

* ``data_weight`` defaults to 1 (the code's ``obs_weight = 1``; SPEC section 6), i.e. ``sigma_y^2`` is
  absorbed into ``lam``, so ``sigma_y = 0`` needs nothing special. ``data_weight="likelihood"`` uses
  ``1 / sigma_y^2`` (the paper's ``||y - f(mu)||^2 / (2 sigma_v^2)``; Gaussian noise with ``sigma_y > 0``).
* Sums, not means: the code averages the data term over the ``m`` entries of ``y`` and the regulariser
  over the ``n`` entries of ``x``. Adam is invariant to a common scale of the loss, so the code's
  ``lam_code`` is ``lam = lam_code * m / n`` here (the same value when ``m = n``: denoising, deblurring;
  ``lam_code / 16`` for 4x super-resolution).
* Noise levels: the paper's schedule (``spacing="vp"``): linear betas 1e-4..0.02, ``T = 1000``,
  ``steps`` evenly spaced timesteps visited in descending order, each at ``sigma_t`` above (from about
  157 down to 0.01; the code's ``get_timesteps`` when ``steps`` divides 1000). It is restricted to
  ``sigma <= sigma_max`` (default: the prior's ``sigma_max``; the timesteps are then spread over the
  allowed range) and clamped below at the prior's ``sigma_min``. ``spacing="edm"`` is Karras et al.'s
  schedule (rho) over the same range instead. The paper's values assume data in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.priors.base import Prior
from invsolve.priors.vp import linear_beta_alphas_cumprod, vp_sigmas
from invsolve.samplers._common import Callback, randn, start
from invsolve.samplers.declaration import NONNEGATIVE, POSITIVE, RHO, Range, SamplerDeclaration
from invsolve.samplers.edm import edm_sigmas
from invsolve.samplers.output import SamplerOutput

# w(sigma) with sigma = sqrt(1 - abar) / sqrt(abar), the inverse square-root SNR (the code's "snr_inv").
WEIGHTINGS: dict[str, Callable[[float], float]] = {
    "inverse_snr": lambda s: s,  # the paper's default ("linear"): lambda_t = lam sqrt(1 - abar_t) / sqrt(abar_t)
    "sqrt": math.sqrt,  # sqrt of the above
    "constant": lambda s: 1.0,  # lambda_t = lam, the unweighted score-matching regulariser
}
INITS = ("pseudo_inverse", "adjoint", "noise")
SPACINGS = ("vp", "edm")


def paper_sigmas(steps: int, sigma_max: float) -> torch.Tensor:
    """The paper's ``sigma_t`` (VE form) at ``steps`` descending timesteps of the linear-beta VP
    schedule (1e-4..0.02, ``T = 1000``), over the timesteps whose ``sigma_t <= sigma_max``.

    Timesteps ``t_i = floor(k * T' / steps)`` for ``k = steps - 1, ..., 0``, with ``T'`` the number of
    allowed timesteps: the authors' ``range(0, T, T // steps)`` reversed when ``steps`` divides ``T' = T``.
    """
    table = vp_sigmas(linear_beta_alphas_cumprod())  # increasing in t, 0.01 .. 157
    allowed = int((table <= sigma_max).sum())
    if allowed == 0:
        raise ValueError(f"sigma_max must be >= {float(table[0]):.4g} (the schedule's smallest sigma), got {sigma_max}")
    t = torch.arange(steps - 1, -1, -1, dtype=torch.float64).mul(allowed / steps).floor().long()
    return table[t]


def red_diff_sigmas(prior: Prior, steps: int | None, sigmas, *, spacing: str, sigma_max: float | None,
                    rho: float) -> torch.Tensor:
    """One noise level per step, float64 on the CPU: ``sigmas`` if given (any order, all > 0; a
    trailing 0 as in :func:`edm_sigmas` is dropped), else the ``spacing`` schedule (module docstring)."""
    if sigmas is not None:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
        if s.dim() == 1 and s.numel() > 1 and float(s[-1]) == 0:
            s = s[:-1]
        if s.dim() != 1 or s.numel() < 1 or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError("sigmas must be a non-empty 1-D sequence of finite noise levels > 0 (one per step)")
        return s
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer (or give sigmas), got {steps!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    top = prior.sigma_max if sigma_max is None else float(sigma_max)
    if not prior.sigma_min < top <= prior.sigma_max:
        raise ValueError(f"sigma_max must lie in the prior's range ({prior.sigma_min}, {prior.sigma_max}], got {top}")
    if spacing == "vp":
        return paper_sigmas(steps, top).clamp_min(prior.sigma_min)
    return edm_sigmas(steps, prior.sigma_min, top, rho)[:-1]


def initial_mean(measurement: Measurement, init, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """``mu_0`` of shape ``(n_samples * B, *x_shape)`` (item ``s * B + b`` belongs to measurement ``b``).

    ``"pseudo_inverse"``: ``A^+ y`` (``operator.pseudo_inverse``, the paper's initialisation);
    ``"adjoint"``: ``A^T y``; both need a linear operator. ``"noise"``: ``N(0, I)`` draws, one per sample
    (``mu`` is a clean-image estimate on the data scale, so the noise is unit, not ``sigma_max``).
    A tensor of shape ``(B, *x_shape)`` or ``(n_samples, B, *x_shape)`` is used as given.
    """
    y, batch = measurement.y, measurement.batch_size
    shape = (n_samples * batch, *measurement.x_shape)
    if isinstance(init, torch.Tensor):
        if tuple(init.shape) == (batch, *measurement.x_shape):
            init = init.repeat(n_samples, *([1] * (init.dim() - 1)))
        if tuple(init.shape) not in (shape, (n_samples, batch, *measurement.x_shape)):
            raise ValueError(f"init tensor must have shape {(batch, *measurement.x_shape)} or "
                             f"{(n_samples, batch, *measurement.x_shape)}, got {tuple(init.shape)}")
        return init.detach().reshape(shape).to(dtype=y.dtype, device=y.device)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS} or a tensor, got {init!r}")
    if init == "noise":
        return randn(shape, generator, y.dtype, y.device)
    op = measurement.operator
    if not isinstance(op, LinearOperator):
        raise TypeError(f"init={init!r} needs a linear operator (pseudo-inverse / adjoint), got the nonlinear "
                        f"{type(op).__name__}; use init='noise' or pass an initial tensor")
    with torch.no_grad():
        mu0 = op.pseudo_inverse(y) if init == "pseudo_inverse" else op.A_adjoint(y)
    return mu0.repeat(n_samples, *([1] * (mu0.dim() - 1))) if n_samples > 1 else mu0


def resolve_data_weight(measurement: Measurement, data_weight) -> float:
    """A number ``>= 0``, or ``"likelihood"``: ``1 / sigma_y^2`` (Gaussian noise with ``sigma_y > 0``)."""
    if data_weight == "likelihood":
        noise = measurement.noise
        if not isinstance(noise, GaussianNoise) or noise.sigma == 0:
            raise ValueError(f"data_weight='likelihood' (1 / sigma_y^2) needs GaussianNoise with sigma_y > 0, "
                             f"got {noise!r}; pass a number instead")
        return 1.0 / noise.sigma**2
    if isinstance(data_weight, bool) or not isinstance(data_weight, (int, float)) or not data_weight >= 0 \
            or not math.isfinite(data_weight):
        raise ValueError(f"data_weight must be a finite number >= 0 or 'likelihood', got {data_weight!r}")
    return float(data_weight)


def data_term(measurement: Measurement, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||y - A(mu)||^2 / 2 per item, its gradient J_A(mu)^T (A(mu) - y))``: the adjoint for linear
    operators, one autograd VJP through the operator (never the prior) otherwise."""
    op = measurement.operator
    if isinstance(op, LinearOperator):
        r = measurement.residual(mu)
        grad = -op.A_adjoint(r)
    else:
        with torch.enable_grad():
            x = mu.detach().requires_grad_(True)
            r = measurement.residual(x)
            (grad,) = torch.autograd.grad(r, x, grad_outputs=r.detach())  # d(y - A x)^T r = -J^T r
        r = r.detach()
    return 0.5 * r.reshape(r.shape[0], -1).square().sum(dim=1), grad


def regularizer_grad(mu: torch.Tensor, denoised: torch.Tensor, sigma: float, scale: float) -> torch.Tensor:
    """``scale * (eps_hat - eps) = scale * (mu - D(mu + sigma eps, sigma)) / sigma`` (``scale = lam w(sigma)``)."""
    return (mu - denoised).mul_(scale / sigma)


def adam_step(mu: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, *,
              lr: float, betas: tuple[float, float], eps: float = 1e-8
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam update (Kingma & Ba, 2015, Algorithm 1; ``step`` counts from 1), as ``torch.optim.Adam``:
    returns new ``(mu, m, v)``; the inputs are not modified."""
    b1, b2 = betas
    m = torch.lerp(m, grad, 1.0 - b1)
    v = torch.addcmul(v * b2, grad, grad, value=1.0 - b2)
    denom = v.sqrt().div_(math.sqrt(1.0 - b2**step)).add_(eps)
    return torch.addcdiv(mu, m, denom, value=-lr / (1.0 - b1**step)), m, v


def _check_hyper(lr: float, lam: float, betas, weighting: str) -> None:
    for name, val in (("lr", lr), ("lam", lam)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
    if lr == 0:
        raise ValueError("lr must be > 0")
    if len(tuple(betas)) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {tuple(WEIGHTINGS)}, got {weighting!r}")


def red_diff(measurement: Measurement, prior: Prior, *, steps: int | None = 100, sigmas=None, n_samples: int = 1,
             generator: torch.Generator, callback: Callback | None = None, lr: float = 0.25, lam: float = 0.25,
             weighting: str = "inverse_snr", init: str | torch.Tensor = "pseudo_inverse",
             betas: tuple[float, float] = (0.9, 0.99), data_weight: float | str = 1.0, spacing: str = "vp",
             sigma_max: float | None = None, rho: float = 7.0) -> SamplerOutput:
    """RED-Diff estimates ``mu``, shape ``(n_samples, B, *x_shape)`` (samples differ by their noise draws).

    Args:
        steps / sigmas: number of steps of the default schedule, or one explicit noise level per step.
        lr, betas: Adam's step size and moment decays (the paper: betas (0.9, 0.99), lr 0.1-0.5).
        lam: regularisation weight (the paper: 0.25-1.0).
        weighting: ``w(sigma)``: ``"inverse_snr"`` (``sigma``), ``"sqrt"`` (``sqrt(sigma)``), ``"constant"`` (1).
        init: ``"pseudo_inverse"``, ``"adjoint"``, ``"noise"`` or a tensor (:func:`initial_mean`).
        data_weight: the data term's factor (1, or ``"likelihood"`` for ``1 / sigma_y^2``).
        spacing, sigma_max, rho: the default schedule (module docstring).

    One denoiser call per step (``nfe = steps``), under ``torch.no_grad``. The callback gets ``x = mu``
    after the step and ``denoised = D(mu + sigma eps, sigma)``. ``diagnostics``: ``sigmas``,
    ``data_fidelity`` (``||y - A(mu)||^2 / 2`` before each step) and ``loss`` (the surrogate objective
    ``data_weight * data_fidelity + lam w(sigma) <eps_hat - eps, mu>``), both ``(steps, n_samples, B)``.
    """
    _check_hyper(lr, lam, betas, weighting)
    dw = resolve_data_weight(measurement, data_weight)

    def step_sigmas(prior: Prior, steps: int | None, sigmas, rho: float) -> torch.Tensor:
        return red_diff_sigmas(prior, steps, sigmas, spacing=spacing, sigma_max=sigma_max, rho=rho)

    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback, schedule=step_sigmas)
    mu = initial_mean(measurement, init, n_samples, generator)
    m, v = torch.zeros_like(mu), torch.zeros_like(mu)
    w = WEIGHTINGS[weighting]
    fidelity, losses = [], []
    with torch.no_grad():
        for i, sigma in enumerate(run.sigmas):  # one noise level per step (no final level)
            x0 = prior.denoise(mu + sigma * run.noise(mu.shape), sigma)
            fid, grad = data_term(run.measurement, mu)
            reg = regularizer_grad(mu, x0, sigma, lam * w(sigma))
            fidelity.append(fid)
            losses.append(dw * fid + (reg * mu).reshape(mu.shape[0], -1).sum(dim=1))
            mu, m, v = adam_step(mu, grad.mul_(dw).add_(reg), m, v, i + 1, lr=lr, betas=tuple(betas))
            run.report(i, sigma, mu, x0, data_fidelity=fid)
    shape = (len(run.sigmas), n_samples, run.batch)
    return run.output(mu, nfe=len(run.sigmas), data_fidelity=torch.stack(fidelity).reshape(shape),
                      loss=torch.stack(losses).reshape(shape), lr=lr, lam=lam, weighting=weighting, data_weight=dw)


DECLARATION = SamplerDeclaration("red-diff", red_diff, default_steps=100, label="RED-Diff", demo_position=3,
                                 ranges={"lr": POSITIVE, "lam": NONNEGATIVE, "sigma_max": POSITIVE, "rho": RHO,
                                         "data_weight": Range(0, open_low=True, open_high=True, words=("likelihood",))})
