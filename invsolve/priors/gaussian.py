"""Gaussian and Gaussian-mixture priors with exact denoisers, in the EDM sigma convention.

For a mixture ``p(x0) = sum_k w_k N(x0; mu_k, Sigma_k)`` the diffused density
``p_sigma = p * N(0, sigma^2 I)`` is again a mixture, with covariances
``Sigma_k + sigma^2 I``. The posterior of ``x0`` given ``x_sigma = x`` is the
mixture of the component posteriors, weighted by the responsibilities

    r_k(x) = w_k N(x; mu_k, Sigma_k + sigma^2 I) / p_sigma(x),

and each component posterior mean is ``mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)``
(Bishop, 2006, eq. 2.113-2.117). So the exact denoiser (Tweedie's formula,
Efron 2011; Karras et al. 2022, eq. 3) is

    D(x, sigma) = sum_k r_k(x) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)].

Implementation: each covariance is diagonalised once, ``Sigma_k = Q_k diag(lam_k) Q_k^T``.
Then for any sigma the solves are divisions by ``lam_k + sigma^2`` (exact for
every sigma, including singular covariances at sigma > 0), the log-determinant is
``sum log(lam_k + sigma^2)``, and the responsibilities are formed in log space
with ``logsumexp``. Three layouts are recognised automatically: diagonal
covariances (no rotation), one covariance shared by every component (one
rotation; quadratic forms become matrix products, ``O(B K d)``), and general
per-component covariances (``O(B K d^2)``). Arithmetic runs in float64 whatever
the input dtype; the result is cast back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from invsolve._validation import require_finite, require_floating
from invsolve.priors.base import Prior, sigma_like

_COMPUTE = torch.float64


def _as_f64(name: str, t) -> torch.Tensor:
    t = torch.as_tensor(t)
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real tensor, got {t.dtype}")
    return require_finite(name, t.to(_COMPUTE))


def eig_psd(cov: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a (batch of) symmetric PSD matrices, small negative eigenvalues clamped to 0."""
    scale = cov.diagonal(dim1=-2, dim2=-1).abs().amax(dim=-1).clamp_min(1e-300)
    asym = (cov - cov.transpose(-1, -2)).abs().amax(dim=(-2, -1))
    if bool((asym > 1e-8 * scale).any()):
        raise ValueError(f"{name} must be symmetric")
    lam, Q = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
    tol = 1e-10 * lam.abs().amax(dim=-1, keepdim=True).clamp_min(1e-300)
    if bool((lam < -tol).any()):
        raise ValueError(f"{name} must be positive semi-definite (smallest eigenvalue {float(lam.min()):.3g})")
    return lam.clamp_min(0.0), Q


class GaussianMixturePrior(Prior):
    """``p(x0) = sum_k w_k N(mu_k, Sigma_k)`` over tensors of shape ``shape``, with the exact denoiser.

    Args:
        weights: ``(K,)`` non-negative mixture weights (normalised here).
        means: ``(K, d)`` or ``(K, *shape)``.
        covariances: ``(K, d, d)`` full covariances; ``(d, d)`` one covariance shared by all
            components; ``(K,)`` isotropic variances ``v_k I``; or a number (``v I`` for all).
            Covariances must be symmetric positive semi-definite (singular ones are allowed:
            the denoiser is exact for every ``sigma > 0``).
        shape: per-item data shape (default ``(d,)``).
        sigma_min, sigma_max: the noise range samplers use. ``sigma_max`` defaults to
            ``max(80, 10 * sqrt(lambda_max(E[x0 x0^T])))`` (an upper bound of it) so that
            ``N(0, sigma_max^2 I)`` is an accurate starting distribution whatever the
            data scale and offset.
        value_range: range of clean data for display (default unbounded).
    """

    def __init__(
        self,
        weights,
        means,
        covariances,
        *,
        shape: Sequence[int] | None = None,
        sigma_min: float = 2e-3,
        sigma_max: float | None = None,
        value_range: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        w = _as_f64("weights", weights)
        mu = _as_f64("means", means)
        if w.dim() != 1 or w.numel() < 1:
            raise ValueError(f"weights must have shape (K,), got {tuple(w.shape)}")
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        K = w.numel()
        if mu.dim() < 2 or mu.shape[0] != K:
            raise ValueError(f"means must have shape (K={K}, d) or (K, *shape), got {tuple(mu.shape)}")
        self.shape = tuple(int(s) for s in (shape if shape is not None else mu.shape[1:]))
        d = math.prod(self.shape)
        if mu[0].numel() != d:
            raise ValueError(f"means have {mu[0].numel()} entries per component but shape {self.shape} has {d}")
        mu = mu.reshape(K, d)
        self._log_w = torch.log(w / w.sum())
        self._mu = mu
        self.d = d
        self._init_covariance(covariances, K, d)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max) if sigma_max is not None else self._default_sigma_max()
        self.value_range = value_range
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    # -- construction helpers -----------------------------------------------------
    def _init_covariance(self, covariances, K: int, d: int) -> None:
        cov = _as_f64("covariances", covariances)
        # _basis: "diagonal" (Q = I), "shared" (one Q (d, d)) or "full" (Q_k (K, d, d)).
        if cov.dim() == 0 or (cov.dim() == 1 and cov.numel() == K):
            v = cov.reshape(-1).expand(K) if cov.dim() == 0 else cov
            if bool((v < 0).any()):
                raise ValueError("isotropic variances must be >= 0")
            self._basis, self._Q, self._lam = "diagonal", None, v[:, None].expand(K, d).clone()
        elif cov.shape == (d, d):
            lam, Q = self._diag_or_eig(cov[None], "covariances")
            if Q is None:
                self._basis, self._Q, self._lam = "diagonal", None, lam.expand(K, d).clone()
            else:
                self._basis, self._Q, self._lam = "shared", Q[0], lam.expand(K, d).clone()
        elif cov.shape == (K, d, d):
            if K > 1 and bool((cov == cov[:1]).all()):
                self._init_covariance(cov[0], K, d)
                return
            lam, Q = self._diag_or_eig(cov, "covariances")
            self._basis, self._Q, self._lam = ("diagonal", None, lam) if Q is None else ("full", Q, lam)
        else:
            raise ValueError(
                f"covariances must have shape (K, d, d) = ({K}, {d}, {d}), (d, d), (K,) or be a number, "
                f"got {tuple(cov.shape)}"
            )
        self._mu_rot = self._mu @ self._Q if self._basis == "shared" else self._mu

    @staticmethod
    def _diag_or_eig(cov: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        diag = cov.diagonal(dim1=-2, dim2=-1)
        if bool((cov == torch.diag_embed(diag)).all()):
            if bool((diag < 0).any()):
                raise ValueError(f"{name} must be positive semi-definite")
            return diag.clone(), None
        return eig_psd(cov, name)

    @classmethod
    def _from_parts(cls, log_w, mu, lam, Q, basis, shape, sigma_min, sigma_max, value_range):
        """Build from an existing eigen-decomposition (no re-factorisation)."""
        self = cls.__new__(cls)
        self.shape = tuple(shape)
        self.d = mu.shape[1]
        self._log_w = log_w - torch.logsumexp(log_w, dim=0)
        self._mu, self._lam, self._Q, self._basis = mu, lam, Q, basis
        self._mu_rot = mu @ Q if basis == "shared" else mu
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max) if sigma_max is not None else self._default_sigma_max()
        self.value_range = value_range
        return self

    def _default_sigma_max(self) -> float:
        # lambda_max(E[x x^T]) <= max_k lambda_max(Sigma_k) + lambda_max(sum_k w_k mu_k mu_k^T);
        # the latter is the top eigenvalue of the K x K Gram matrix of sqrt(w_k) mu_k.
        sw = self._log_w.exp().sqrt()[:, None] * self._mu
        top = float(self._lam.max()) + float(torch.linalg.eigvalsh(sw @ sw.T).max())
        return max(80.0, 10.0 * math.sqrt(max(top, 0.0)))

    # -- parameters -----------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return self._mu.shape[0]

    @property
    def weights(self) -> torch.Tensor:
        """``(K,)`` normalised weights (float64)."""
        return self._log_w.exp()

    @property
    def log_weights(self) -> torch.Tensor:
        return self._log_w

    @property
    def means(self) -> torch.Tensor:
        """``(K, d)`` component means (float64)."""
        return self._mu

    @property
    def covariances(self) -> torch.Tensor:
        """``(K, d, d)`` component covariances (float64), rebuilt from the eigen-decomposition."""
        if self._basis == "diagonal":
            return torch.diag_embed(self._lam)
        Q = self._Q if self._basis == "full" else self._Q.expand(self.n_components, self.d, self.d)
        return (Q * self._lam[:, None, :]) @ Q.transpose(-1, -2)

    def shared_covariance(self) -> torch.Tensor | None:
        """The ``(d, d)`` covariance when every component has the same one, else None."""
        if self._basis == "full" or not bool((self._lam == self._lam[:1]).all()):
            return None
        lam = self._lam[0]
        if self._basis == "diagonal":
            return torch.diag(lam)
        return (self._Q * lam) @ self._Q.T

    def mean(self) -> torch.Tensor:
        """Mean of the mixture, shape ``(d,)``."""
        return self.weights @ self._mu

    def covariance(self) -> torch.Tensor:
        """Covariance of the mixture, shape ``(d, d)``."""
        w = self.weights
        m = self.mean()
        c = self._mu - m
        return (w[:, None, None] * self.covariances).sum(0) + (c * w[:, None]).T @ c

    # -- the diffused density --------------------------------------------------------
    def _component_terms(self, u: torch.Tensor, s2: float, k: int | None = None):
        """Log-densities of ``N(x; mu_k, Sigma_k + s2 I)`` (rotated input ``u``) for one noise level."""
        lam = self._lam if k is None else self._lam[k : k + 1]
        w = 1.0 / (lam + s2)  # (K, d)
        logdet = torch.log(lam + s2).sum(dim=-1)  # (K,)
        if k is None and self._isotropic():  # Sigma_k = lam_k I: one (B, d) x (d, K) product
            v = self._mu_rot
            wk = w[:, 0]
            quad = ((u * u).sum(-1, keepdim=True) - 2.0 * (u @ v.T) + (v * v).sum(-1)) * wk
            quad = quad.clamp_min(0.0)
        elif k is None:  # diagonal / shared basis: u is (B, d), v = rotated means
            v = self._mu_rot
            quad = (u * u) @ w.T - 2.0 * (u @ (w * v).T) + (v * v * w).sum(-1)
            quad = quad.clamp_min(0.0)
        else:  # u = Q_k^T (x - mu_k), (B, d)
            quad = (u * u * w).sum(-1, keepdim=True)
        log_norm = self._log_w if k is None else self._log_w[k : k + 1]
        return log_norm - 0.5 * (quad + logdet + self.d * math.log(2 * math.pi)), w

    def _isotropic(self) -> bool:
        """Every component covariance is a multiple of the identity (cached)."""
        iso = getattr(self, "_iso", None)
        if iso is None:
            iso = self._iso = self._basis == "diagonal" and bool((self._lam == self._lam[:, :1]).all())
        return iso

    def _log_joint(self, x: torch.Tensor, s2: float) -> torch.Tensor:
        """``log w_k + log N(x; mu_k, Sigma_k + s2 I)``, shape ``(B, K)``, for flat float64 ``x``."""
        if self._basis == "full":
            cols = []
            for k in range(self.n_components):
                u = (x - self._mu[k]) @ self._Q[k]
                cols.append(self._component_terms(u, s2, k)[0])
            return torch.cat(cols, dim=1)
        u = x @ self._Q if self._basis == "shared" else x
        return self._component_terms(u, s2)[0]

    def _denoise_flat(self, x: torch.Tensor, s2: float) -> torch.Tensor:
        if s2 == 0.0:
            return x
        if self._basis == "full":
            logp = self._log_joint(x, s2)
            r = torch.softmax(logp, dim=1)
            out = torch.zeros_like(x)
            for k in range(self.n_components):
                u = (x - self._mu[k]) @ self._Q[k]
                c = self._lam[k] / (self._lam[k] + s2)
                out = out + r[:, k : k + 1] * (self._mu[k] + (c * u) @ self._Q[k].T)
            return out
        u = x @ self._Q if self._basis == "shared" else x
        logp, w = self._component_terms(u, s2)
        r = torch.softmax(logp, dim=1)  # (B, K)
        c = self._lam * w  # lam / (lam + s2), the shrinkage per eigen-direction
        if self._isotropic():
            out = (r @ c[:, :1]) * u + r @ ((s2 * w[:, :1]) * self._mu_rot)
        else:
            out = (r @ c) * u + r @ ((s2 * w) * self._mu_rot)
        return out @ self._Q.T if self._basis == "shared" else out

    def _per_sigma(self, fn, x: torch.Tensor, sigma) -> torch.Tensor:
        """Apply ``fn(x_flat_f64, sigma^2)`` group by group of equal sigma; returns float64."""
        self.check_x(x)
        require_floating("x", x)
        s = sigma_like(sigma, x).reshape(-1).detach().to(_COMPUTE)
        if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
            raise ValueError("sigma must be finite and >= 0")
        xf = x.reshape(x.shape[0], -1).to(_COMPUTE)
        self._to(xf.device)
        if bool((s == s[0]).all()):
            return fn(xf, float(s[0]) ** 2)
        values, inverse = torch.unique(s, return_inverse=True)
        parts, order = [], []
        for j, val in enumerate(values.tolist()):
            idx = (inverse == j).nonzero().reshape(-1)
            parts.append(fn(xf[idx], val**2))
            order.append(idx)
        out = torch.cat(parts, dim=0)
        return out[torch.argsort(torch.cat(order))]

    def _to(self, device: torch.device) -> None:
        if self._mu.device != device:
            for name in ("_log_w", "_mu", "_lam", "_mu_rot", "_Q"):
                t = getattr(self, name)
                if t is not None:
                    setattr(self, name, t.to(device))

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Exact ``E[x0 | x0 + sigma n = x]``; differentiable in ``x``. ``sigma = 0`` returns ``x``."""
        out = self._per_sigma(self._denoise_flat, x, sigma)
        return out.to(x.dtype).reshape(x.shape)

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        """``log p_sigma(x)`` per item, shape ``(B,)`` (at ``sigma = 0`` the covariances must be non-singular)."""

        def fn(xf, s2):
            return torch.logsumexp(self._log_joint(xf, s2), dim=1)

        return self._per_sigma(fn, x, sigma).to(x.dtype)

    def responsibilities(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``p(component k | x_sigma = x)``, shape ``(B, K)``."""

        def fn(xf, s2):
            return torch.softmax(self._log_joint(xf, s2), dim=1)

        return self._per_sigma(fn, x, sigma).to(x.dtype)

    # -- sampling -----------------------------------------------------------------------
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` exact draws, shape ``(n, *shape)``: a component by its weight, then a Gaussian draw."""
        device = torch.device(device) if device is not None else (
            generator.device if generator is not None else torch.device("cpu")
        )
        self._to(device)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.d, generator=generator, dtype=_COMPUTE, device=device)
        z = z * self._lam[k].sqrt()
        if self._basis == "shared":
            z = z @ self._Q.T
        elif self._basis == "full":
            z = torch.einsum("nij,nj->ni", self._Q[k], z)
        return (self._mu[k] + z).to(dtype).reshape(n, *self.shape)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(K={self.n_components}, d={self.d}, shape={self.shape}, "
            f"covariance_layout={self._basis!r}, sigma_max={self.sigma_max:.4g})"
        )


class GaussianPrior(GaussianMixturePrior):
    """``p(x0) = N(mean, covariance)`` with the exact (linear) denoiser
    ``D(x, sigma) = mean + Sigma (Sigma + sigma^2 I)^-1 (x - mean)``.

    Args:
        mean: ``(d,)`` or ``shape``.
        covariance: ``(d, d)`` symmetric PSD, ``(d,)`` diagonal, or a number ``v`` (``v I``).
        Other arguments as for :class:`GaussianMixturePrior`.
    """

    def __init__(
        self,
        mean,
        covariance,
        *,
        shape: Sequence[int] | None = None,
        sigma_min: float = 2e-3,
        sigma_max: float | None = None,
        value_range: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        mean = _as_f64("mean", mean)
        shape = tuple(shape) if shape is not None else tuple(mean.shape)
        d = math.prod(shape)
        cov = _as_f64("covariance", covariance)
        if cov.dim() == 1:
            if cov.numel() != d:
                raise ValueError(f"a diagonal covariance must have {d} entries, got {cov.numel()}")
            cov = torch.diag(cov)
        elif cov.dim() == 2 and cov.shape != (d, d):
            raise ValueError(f"covariance must have shape ({d}, {d}), got {tuple(cov.shape)}")
        elif cov.dim() > 2:
            raise ValueError(f"covariance must be a number, (d,) or (d, d), got shape {tuple(cov.shape)}")
        super().__init__(
            torch.ones(1, dtype=_COMPUTE),
            mean.reshape(1, d),
            cov,
            shape=shape,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            value_range=value_range,
        )

    def mean(self) -> torch.Tensor:  # noqa: D102 - same as the mixture's
        return self._mu[0]

    def covariance(self) -> torch.Tensor:
        return self.covariances[0]
