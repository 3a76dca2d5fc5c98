"""Exact posterior of a Gaussian or Gaussian-mixture prior under ``y = A x + sigma_y n``.

For a prior ``sum_k w_k N(mu_k, Sigma_k)`` and a linear ``A`` with white Gaussian
noise, the posterior is again a mixture (Bishop, 2006, eq. 2.113-2.117; Cardoso
et al., ICLR 2024, Appendix B.3):

    S_k    = A Sigma_k A^T + sigma_y^2 I                (covariance of y under component k)
    K_k    = Sigma_k A^T S_k^-1                         (Kalman gain)
    m_k'   = mu_k + K_k (y - A mu_k)
    Sigma_k' = Sigma_k - K_k A Sigma_k                 (= (Sigma_k^-1 + A^T A / sigma_y^2)^-1)
    w_k'  ∝ w_k N(y; A mu_k, S_k)
    p(y)   = sum_k w_k N(y; A mu_k, S_k)                (the evidence)

This is the Kalman (covariance) form of the update, chosen because it stays
well defined at ``sigma_y = 0`` whenever ``A Sigma_k A^T`` is invertible: the
posterior then concentrates on the affine subspace ``{A x = y}`` and its
covariance is singular, which the eigen-decomposition used for sampling handles.
Everything is computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.operators.linalg import dense_matrix
from invsolve.priors.gaussian import GaussianMixturePrior, eig_psd

_F64 = torch.float64
_MAX_DENSE = 50_000_000  # entries of a dense operator matrix built by probing


def operator_matrix(operator: LinearOperator, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The dense ``(m, d)`` float64 matrix of a linear operator on flattened tensors.

    Uses ``operator.matrix`` when the operator stores one (``MatrixOperator``);
    otherwise probes the operator (:func:`invsolve.operators.dense_matrix`).
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"the exact posterior needs a LinearOperator, got {type(operator).__name__}")
    mat = getattr(operator, "matrix", None)
    if isinstance(mat, torch.Tensor) and mat.dim() == 2:
        return mat.detach().to(_F64)
    d, m = math.prod(operator.x_shape), math.prod(operator.y_shape)
    if d * m > _MAX_DENSE:
        raise ValueError(f"operator too large for a dense exact posterior ({m} x {d} matrix)")
    matrix = dense_matrix(operator, dtype=operator.dtype or _F64).to(_F64)
    return matrix if device is None else matrix.to(device)


def gmm_posterior(
    log_weights: torch.Tensor,
    means: torch.Tensor,
    covariances: torch.Tensor,
    A: torch.Tensor,
    y: torch.Tensor,
    sigma_y: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior mixture for a batch of measurements (pure function, float64).

    Args:
        log_weights: ``(K,)`` prior log-weights (normalised or not).
        means: ``(K, d)``; covariances: ``(K, d, d)`` or ``(d, d)`` (shared by all components).
        A: ``(m, d)``; y: ``(B, m)``; sigma_y: noise standard deviation (>= 0).

    Returns:
        ``(log_weights' (B, K) normalised, means' (B, K, d), covariances' (K, d, d) or (d, d), log p(y) (B,))``.
        The posterior covariances do not depend on ``y``; a shared prior covariance gives a shared one.
    """
    log_w, mu, A, y = (t.to(_F64) for t in (log_weights, means, A, y))
    cov = covariances.to(_F64)
    shared = cov.dim() == 2
    covs = cov[None] if shared else cov  # (K or 1, d, d)
    m = A.shape[0]
    eye_m = torch.eye(m, dtype=_F64, device=A.device)
    G = covs @ A.T  # Sigma A^T, (K', d, m)
    S = A @ G + sigma_y**2 * eye_m  # (K', m, m)
    S = 0.5 * (S + S.transpose(-1, -2))
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        raise ValueError(
            "A Sigma_k A^T + sigma_y^2 I is singular: with sigma_y = 0 the exact posterior needs "
            "A Sigma_k A^T invertible (A of full row rank on the support of every component)"
        )
    gain = torch.cholesky_solve(G.transpose(-1, -2), L).transpose(-1, -2)  # K = G S^-1, (K', d, m)
    post_cov = covs - gain @ G.transpose(-1, -2)
    post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
    resid = y[:, None, :] - mu @ A.T  # (B, K, m)
    # means: mu_k + K_k resid_bk
    post_mean = mu + torch.einsum("kdm,bkm->bkd", gain.expand(mu.shape[0], -1, -1), resid)
    # log N(resid; 0, S_k) via the Cholesky factor
    Lk = L.expand(mu.shape[0], m, m)
    alpha = torch.linalg.solve_triangular(Lk, resid.permute(1, 2, 0), upper=False)  # (K, m, B)
    quad = alpha.square().sum(dim=1).T  # (B, K)
    logdet = 2.0 * torch.log(Lk.diagonal(dim1=-2, dim2=-1)).sum(-1)  # (K,)
    log_lik = -0.5 * (quad + logdet + m * math.log(2 * math.pi))
    joint = torch.log_softmax(log_w, dim=0) + log_lik
    log_evidence = torch.logsumexp(joint, dim=1)
    return joint - log_evidence[:, None], post_mean, post_cov[0] if shared else post_cov, log_evidence


@dataclass
class GaussianMixturePosterior:
    """The exact posterior for a batch of ``B`` measurements: one mixture per measurement.

    Attributes:
        log_weights: ``(B, K)`` normalised log-weights.
        means: ``(B, K, d)``.
        covariances: ``(K, d, d)``, or ``(d, d)`` shared by all components (independent of ``y``).
        log_evidence: ``(B,)`` exact ``log p(y)``.
        shape: per-item data shape.
    """

    log_weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor
    log_evidence: torch.Tensor
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shared = self.covariances.dim() == 2
        lam, Q = eig_psd(self.covariances[None] if shared else self.covariances, "posterior covariance")
        # Eigenvalues at rounding level are zero (e.g. the measured directions when sigma_y = 0):
        # clearing them keeps noiseless samples exactly on {A x = y} instead of sqrt(eps) off it.
        d = lam.shape[-1]
        floor = 10.0 * d * torch.finfo(lam.dtype).eps * lam.amax(dim=-1, keepdim=True)
        lam = torch.where(lam <= floor, torch.zeros_like(lam), lam)
        K = self.means.shape[1]
        if shared:
            self._lam, self._Q, self._basis = lam.expand(K, -1), Q[0], "shared"
        else:
            self._lam, self._Q, self._basis = lam, Q, "full"

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    def component_prior(self, b: int = 0, **kwargs) -> GaussianMixturePrior:
        """The posterior for measurement ``b`` as a :class:`GaussianMixturePrior` (exact denoiser, sampling)."""
        return GaussianMixturePrior._from_parts(
            self.log_weights[b],
            self.means[b],
            self._lam,
            self._Q,
            self._basis,
            self.shape,
            kwargs.get("sigma_min", 2e-3),
            kwargs.get("sigma_max"),
            kwargs.get("value_range", (-math.inf, math.inf)),
        )

    def mean(self) -> torch.Tensor:
        """Posterior mean, shape ``(B, *shape)``."""
        m = torch.einsum("bk,bkd->bd", self.log_weights.exp(), self.means)
        return m.reshape(self.batch_size, *self.shape)

    def covariance(self) -> torch.Tensor:
        """Posterior covariance of the flattened ``x``, shape ``(B, d, d)``."""
        w = self.log_weights.exp()  # (B, K)
        covs = self.covariances if self.covariances.dim() == 3 else self.covariances[None]
        within = torch.einsum("bk,kij->bij", w, covs.expand(w.shape[1], -1, -1))
        c = self.means - torch.einsum("bk,bkd->bd", w, self.means)[:, None, :]
        return within + torch.einsum("bk,bki,bkj->bij", w, c, c)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = _F64,
    ) -> torch.Tensor:
        """``n`` exact draws per measurement, shape ``(n, B, *shape)``."""
        draws = [self.component_prior(b).sample(n, generator, dtype=dtype) for b in range(self.batch_size)]
        return torch.stack(draws, dim=1)


def _check_inputs(measurement: Measurement, prior: GaussianMixturePrior) -> float:
    if not isinstance(prior, GaussianMixturePrior):
        raise TypeError(
            "the exact posterior needs a GaussianPrior or GaussianMixturePrior, "
            f"got {type(prior).__name__}"
        )
    if not isinstance(measurement, Measurement):
        raise TypeError(f"measurement must be an invsolve.Measurement, got {type(measurement).__name__}")
    if not isinstance(measurement.operator, LinearOperator):
        raise TypeError(
            f"the exact posterior needs a linear operator, got {type(measurement.operator).__name__}"
        )
    if not isinstance(measurement.noise, GaussianNoise):
        raise TypeError(f"the exact posterior needs GaussianNoise, got {measurement.noise!r}")
    if tuple(measurement.x_shape) != tuple(prior.shape):
        raise ValueError(f"operator x_shape {measurement.x_shape} differs from the prior's shape {prior.shape}")
    return measurement.sigma_y


def exact_posterior(measurement: Measurement, prior: GaussianMixturePrior) -> GaussianMixturePosterior:
    """The exact posterior mixture of a Gaussian / GMM prior for a linear-Gaussian measurement."""
    sigma_y = _check_inputs(measurement, prior)
    A = operator_matrix(measurement.operator)
    y = measurement.y.reshape(measurement.batch_size, -1)
    prior._to(A.device)
    covs = prior.shared_covariance()
    if covs is None:
        covs = prior.covariances
    log_w, means, post_cov, log_ev = gmm_posterior(prior.log_weights, prior.means, covs, A, y, sigma_y)
    return GaussianMixturePosterior(log_w, means, post_cov, log_ev, tuple(prior.shape))


def log_evidence(measurement: Measurement, prior: GaussianMixturePrior) -> torch.Tensor:
    """Exact ``log p(y)`` per measurement, shape ``(B,)`` (a density on the flattened ``y``)."""
    return exact_posterior(measurement, prior).log_evidence
