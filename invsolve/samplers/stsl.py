"""STSL: latent-diffusion posterior sampling with the second-order Tweedie surrogate (Rout, Chen, Kumar, Caramanis,
Shakkottai, Chu; "Beyond First-Order Tweedie: Solving Inverse Problems using Latent Diffusion", CVPR 2024).

First-order methods (latent DPS) guide with ``E[z0 | z_t]`` alone. STSL also uses the second-order Tweedie term,
the trace of the score Jacobian ``tr(grad_z s(z_t, sigma))`` (``Cov[z0 | z_t] = sigma^2 (I + sigma^2 grad s)``),
in a surrogate loss minimised by a few gradient steps at every noise level (the paper's Algorithm 1):

    L(z) = lam * ||y - A(decode(D(z, sigma)))||^2 + eta_trace * tr(grad_z s(z, sigma)),

the trace estimated with Hutchinson probes by a finite difference of the score (one extra score call per probe,
no second derivatives): ``tr(J) ~ eps^T (s(z + delta eps) - s(z)) / delta``, ``eps ~ N(0, I)``
(:func:`score_jacobian_trace`). Per step ``sigma_i -> sigma_{i+1}``: ``inner_steps`` gradient steps of size
``lr`` on ``L`` at ``z_i`` (gradients through denoiser and decoder), then the unconditional DDIM step from the
updated ``z_i``. Initialisation (Section 4): the encoded back-projection ``E(A^+ y)`` noised to the first noise
level ``sigma_start`` (``A^+ y`` by conjugate gradients on the normal equations), so that the chain starts near
the data instead of at ``sigma_max``.

The paper's budget is 50 steps x 5 inner updates (eta on the trace term 0.02, lambda ~ 1/sigma_y^2; SPEC 11).
Cost per step: ``inner_steps * (1 + probes)`` denoiser calls, ``inner_steps`` decoder calls and backward passes,
plus one denoiser call for the DDIM step; all counted in ``nfe`` / ``diagnostics``.
"""

from __future__ import annotations


import torch

from invsolve.measurement import Measurement
from invsolve.operators.base import LinearOperator, conjugate_gradient
from invsolve.samplers._common import Callback, require_linear, start
from invsolve.samplers.declaration import NONNEGATIVE, POSITIVE, RHO, UNIT, Need, Range, SamplerDeclaration
from invsolve.samplers.edm import ddim_step, edm_sigmas
from invsolve.samplers.output import SamplerOutput


def score_jacobian_trace(score, z: torch.Tensor, sigma: float, *, delta: float, probes: int,
                         generator: torch.Generator, score_at_z: torch.Tensor | None = None) -> torch.Tensor:
    """Hutchinson estimate of ``tr(grad_z s(z, sigma))`` per item, ``(B,)``, by finite differences of the score.

    ``E[eps^T (s(z + delta eps) - s(z)) / delta] = tr(J)`` up to ``O(delta)`` (exact for a linear score), with
    variance ``2 ||J||_F^2 / probes`` for a symmetric ``J``. Differentiable in ``z`` when the score is.
    """
    s0 = score(z, sigma) if score_at_z is None else score_at_z
    total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for _ in range(probes):
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        total = total + (eps * (score(z + delta * eps, sigma) - s0)).reshape(z.shape[0], -1).sum(dim=1) / delta
    return total / probes


def back_projection(operator: LinearOperator, y: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """``A^+ y``: least squares ``A^T A x = A^T y`` by conjugate gradients from zero (the minimum-norm solution)."""
    return conjugate_gradient(lambda v: operator.A_adjoint(operator.A(v)), operator.A_adjoint(y),
                              max_iter=iterations, tol=1e-6)


def stsl_loss(measurement: Measurement, prior, z: torch.Tensor, sigma: float, *, lam: float, eta_trace: float,
              delta: float, probes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L(z) per item, z0_hat)``: the surrogate of the module docstring (graph kept for ``grad_z``)."""
    z0 = prior.denoise(z, sigma)
    r = measurement.residual(prior.decode(z0))
    data = r.reshape(r.shape[0], -1).square().sum(dim=1)
    loss = lam * data
    if eta_trace > 0:
        score0 = (z0 - z) / sigma**2

        def score(v: torch.Tensor, s: float) -> torch.Tensor:
            return (prior.denoise(v, s) - v) / s**2

        loss = loss + eta_trace * score_jacobian_trace(score, z, sigma, delta=delta, probes=probes,
                                                       generator=generator, score_at_z=score0)
    return loss, z0


def stsl(measurement: Measurement, prior, *, steps: int | None = 50, sigmas=None, n_samples: int = 1,
         generator: torch.Generator, callback: Callback | None = None, inner_steps: int = 5, lr: float = 0.05,
         lam: float | None = None, eta_trace: float = 0.02, delta: float = 0.01, probes: int = 1,
         sigma_start: float = 10.0, eta: float = 1.0, rho: float = 7.0) -> SamplerOutput:
    """STSL posterior samples (decoded images), shape ``(n_samples, B, *image_shape)``.

    Args:
        prior: a :class:`~invsolve.priors.latent.LatentPrior`.
        inner_steps, lr: gradient steps on the surrogate per noise level and their size (plain gradient descent,
            each step normalised by the loss gradient's RMS so that ``lr`` is a step in latent units).
        lam: weight of the data term (default ``1 / (2 sigma_y^2)``, the Gaussian log-likelihood's).
        eta_trace, delta, probes: weight of the trace term, finite-difference step, Hutchinson probes.
        sigma_start: the first noise level (the back-projection is noised to it); capped at the prior's maximum.
        eta: DDIM stochasticity of the unconditional step (1 = ancestral).
    """
    op = require_linear(measurement, "STSL")
    if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 0:
        raise ValueError(f"inner_steps must be an integer >= 0, got {inner_steps!r}")
    if not isinstance(probes, int) or isinstance(probes, bool) or probes < 1:
        raise ValueError(f"probes must be a positive integer, got {probes!r}")
    sigma_y = float(getattr(measurement.noise, "sigma", 0.0))
    if lam is None:
        lam = 1.0 / (2.0 * max(sigma_y, 1e-3) ** 2)

    def schedule(p, n, given, r):
        if given is not None:
            from invsolve.samplers.edm import check_sigmas

            return check_sigmas(given)
        if n is None:
            raise ValueError("give steps or sigmas")
        return edm_sigmas(n, p.sigma_min, min(sigma_start, p.sigma_max), r)

    run = start(measurement, prior, steps=steps, sigmas=sigmas, rho=rho, n_samples=n_samples, generator=generator,
                callback=callback, schedule=schedule)
    with torch.no_grad():
        z = prior.encode(back_projection(op, run.measurement.y).expand(run.n_items, *measurement.x_shape))
    z = z + run.sigmas[0] * run.noise()
    nfe = decoder_calls = backward = 0
    for i, sigma, sigma_next in run.transitions():
        for _ in range(inner_steps):
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                loss, _ = stsl_loss(run.measurement, prior, zg, sigma, lam=lam, eta_trace=eta_trace, delta=delta,
                                    probes=probes, generator=generator)
                (grad,) = torch.autograd.grad(loss.sum(), zg)
            rms = grad.reshape(grad.shape[0], -1).square().mean(dim=1).sqrt().clamp_min(1e-12)
            z = z.detach() - lr * grad / rms.reshape(-1, *([1] * (grad.dim() - 1)))
            nfe, decoder_calls, backward = nfe + 1 + (probes if eta_trace > 0 else 0), decoder_calls + 1, backward + 1
        with torch.no_grad():
            z0 = prior.denoise(z, sigma)
        nfe += 1
        noise = run.noise() if eta > 0 and sigma_next > 0 else None
        z = ddim_step(z, z0, sigma, sigma_next, eta, noise)
        run.report(i, sigma, z, z0)
    with torch.no_grad():
        x = prior.decode(z)
    return run.output(x, nfe=nfe, decoder_calls=decoder_calls + 1, encoder_calls=1, backward_passes=backward,
                      lam=lam)


DECLARATION = SamplerDeclaration(
    "stsl", stsl, default_steps=50, needs={Need.LATENT_PRIOR, Need.LINEAR}, label="STSL",
    ranges={"inner_steps": Range(0, 1000, integer=True), "lr": NONNEGATIVE, "lam": NONNEGATIVE,
            "eta_trace": NONNEGATIVE, "delta": POSITIVE, "probes": Range(1, 1000, integer=True),
            "sigma_start": POSITIVE, "eta": UNIT, "rho": RHO})
