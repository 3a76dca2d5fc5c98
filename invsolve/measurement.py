"""The likelihood object every sampler receives: ``Measurement(operator, noise, y)``."""

from __future__ import annotations

import torch

from invsolve._validation import require_finite, require_floating, require_tensor
from invsolve.noise import GaussianNoise, NoiseModel
from invsolve.operators.base import Operator


def _require_finite_image(x: torch.Tensor) -> None:
    """Refuse NaN / Inf in ``x`` where a value can be inspected (not inside ``torch.func`` transforms such as
    ``vmap``, where a data-dependent check is not allowed; those callers check their inputs themselves)."""
    if not torch._C._are_functorch_transforms_active():
        require_finite("x", x)


class Measurement:
    """Observed data ``y`` with its forward operator and noise model.

    ``y`` has shape ``(B, *operator.y_shape)``. Methods taking an image ``x``
    accept ``(B, *x_shape)`` or, when ``B == 1``, any batch of images (e.g. a
    batch of particles or posterior samples for one measurement): ``y`` is then
    broadcast. Everything is validated at construction: types, rank, shape,
    dtype, device and finiteness.
    """

    def __init__(self, operator: Operator, noise: NoiseModel, y: torch.Tensor) -> None:
        if not isinstance(operator, Operator):
            raise TypeError(f"operator must be an invsolve.operators.Operator, got {type(operator).__name__}")
        if not isinstance(noise, NoiseModel):
            raise TypeError(f"noise must be an invsolve.NoiseModel, got {type(noise).__name__}")
        require_tensor("y", y)
        require_floating("y", y)
        operator.check_y(y, "y")
        if y.shape[0] == 0:
            raise ValueError("y holds no measurement (batch size 0)")
        if y.device != operator.device and any(True for _ in operator.buffers()):
            raise ValueError(f"y is on {y.device} but the operator is on {operator.device}")
        require_finite("y", y)
        noise.validate_measurement(y)
        self.operator = operator
        self.noise = noise
        self.y = y

    @classmethod
    def simulate(
        cls, operator: Operator, noise: NoiseModel, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> Measurement:
        """Measure a ground truth ``x``: ``y = noise.sample(A x)``."""
        require_finite("x", require_floating("x", require_tensor("x", x)))
        with torch.no_grad():
            y = noise.sample(operator.A(x), generator=generator)
        return cls(operator, noise, y)

    # -- shapes ---------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.y.shape[0]

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.operator.x_shape

    @property
    def sigma_y(self) -> float:
        """Noise standard deviation for Gaussian noise (raises for other noise models)."""
        if not isinstance(self.noise, GaussianNoise):
            raise TypeError(f"sigma_y is defined for GaussianNoise only, this measurement has {self.noise!r}")
        return self.noise.sigma

    def _check_batch(self, x: torch.Tensor) -> None:
        if x.shape[0] != self.batch_size and self.batch_size != 1:
            raise ValueError(
                f"x has batch size {x.shape[0]} but y has {self.batch_size}; "
                "they must match, or y must have batch size 1 to be broadcast"
            )

    def _y_for(self, x: torch.Tensor) -> torch.Tensor:
        self._check_batch(x)
        return self.y if self.y.shape[0] == x.shape[0] else self.y.expand(x.shape[0], *self.y.shape[1:])

    # -- likelihood -----------------------------------------------------------------
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``y - A(x)``, shape ``(B, *y_shape)``."""
        return self._y_for(x) - self.operator.A(x)

    def data_fidelity(self, x: torch.Tensor) -> torch.Tensor:
        """``||y - A(x)||^2 / 2`` per batch item (unweighted by the noise level)."""
        _require_finite_image(x)
        r = self.residual(x)
        return 0.5 * r.reshape(r.shape[0], -1).square().sum(dim=1)

    def grad_data_fidelity(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient of :meth:`data_fidelity`: ``-A^T (y - A x)`` (a VJP for nonlinear operators)."""
        return -self.operator.vjp(x, self.residual(x))

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` per batch item, shape ``(B,)``."""
        _require_finite_image(x)
        return self.noise.log_likelihood(self._y_for(x), self.operator.A(x))

    def grad_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``grad_x log p(y | x)``: the adjoint for linear operators, the autograd VJP otherwise."""
        _require_finite_image(x)
        Ax = self.operator.A(x)
        g = self.noise.grad_log_likelihood(self._y_for(x), Ax)
        return self.operator.vjp(x, g)

    def __repr__(self) -> str:
        return f"Measurement(operator={type(self.operator).__name__}, noise={self.noise!r}, y={tuple(self.y.shape)})"
