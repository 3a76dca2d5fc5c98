"""Operator interface: ``A`` (and ``A_adjoint`` for linear operators) on batched tensors.

Shapes are per item: an operator maps tensors of shape ``(B, *x_shape)`` to
``(B, *y_shape)``. Calls check the trailing shape (a tuple comparison, so the
interface adds no measurable cost; see ``experiments/benchmarks/operators.py``)
and never broadcast silently.

Complex data convention (used by every operator in this package and by deepinv):
a complex image or k-space array is stored as a *real* tensor with a leading
channel axis of size 2 holding (real, imaginary) parts, e.g. ``(B, 2, H, W)``
for a 2D complex image and ``(B, 2, coils, H, W)`` for multi-coil k-space.
Inner products are the real inner product of these tensors, which equals
``Re <u, v>`` of the complex vectors, so adjoints are complex adjoints.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import torch
from torch import nn

from invsolve._validation import require_generator

Shape = tuple[int, ...]


def _shape_error(name: str, expected: Shape, got: torch.Size) -> ValueError:
    return ValueError(
        f"{name} must have shape (batch, {', '.join(map(str, expected))}), got {tuple(got)}"
    )


class Operator(nn.Module, abc.ABC):
    """A forward operator ``A: (B, *x_shape) -> (B, *y_shape)``.

    Subclasses implement :meth:`_forward`. Nonlinear operators get their
    vector-Jacobian product from autograd.
    """

    linear: bool = False

    def __init__(self, x_shape: Sequence[int], y_shape: Sequence[int]) -> None:
        super().__init__()
        self.x_shape: Shape = tuple(int(s) for s in x_shape)
        self.y_shape: Shape = tuple(int(s) for s in y_shape)
        self._x_rank = len(self.x_shape) + 1
        self._y_rank = len(self.y_shape) + 1
        self._cached_dtype: torch.dtype | None = None
        self._dtype_known = False
        # dtype of the last tensor that passed a full check; lets calls skip the slow path.
        self._fast_dtype: torch.dtype | None = None

    # -- dtype / device -------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype | None:
        """Floating dtype of the operator's tensors (None if it holds none)."""
        if not self._dtype_known:
            self._cached_dtype = next(
                (t.dtype for t in self._all_tensors() if t.is_floating_point()), None
            )
            self._dtype_known = True
        return self._cached_dtype

    @property
    def device(self) -> torch.device:
        return next((t.device for t in self._all_tensors()), torch.device("cpu"))

    def _all_tensors(self):
        yield from self.buffers()
        yield from self.parameters()

    def _apply(self, fn, recurse=True):  # called by .to(), .double(), .cuda(), ...
        self._dtype_known = False
        self._fast_dtype = None
        return super()._apply(fn, recurse)

    # -- checks -----------------------------------------------------------------
    # The fast path (a plain tensor of the operator's dtype and shape) costs a few
    # attribute reads and one tuple comparison; everything else takes the full check.
    def check_x(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if type(x) is torch.Tensor and x.dtype is self._fast_dtype and x.dim() == self._x_rank \
                and x.shape[1:] == self.x_shape:
            return x
        return self._check_x_full(x, name)

    def check_y(self, y: torch.Tensor, name: str = "y") -> torch.Tensor:
        if type(y) is torch.Tensor and y.dtype is self._fast_dtype and y.dim() == self._y_rank \
                and y.shape[1:] == self.y_shape:
            return y
        return self._check_y_full(y, name)

    def _check_x_full(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return self._check_full(x, self.x_shape, name)

    def _check_y_full(self, y: torch.Tensor, name: str) -> torch.Tensor:
        return self._check_full(y, self.y_shape, name)

    def _check_full(self, t: torch.Tensor, item_shape: Shape, name: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape[1:] != item_shape or t.dim() != len(item_shape) + 1:
            raise _shape_error(name, item_shape, t.shape)
        self._check_dtype(t, name)
        return t

    def _check_dtype(self, t: torch.Tensor, name: str) -> None:
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a real float32 or float64 tensor, got {t.dtype} "
                "(complex data is stored as two real channels)"
            )
        own = self.dtype
        if own is not None and t.dtype != own:
            supported = " (operators work in float32 and float64)" if t.dtype not in (torch.float32,
                                                                                     torch.float64) else ""
            raise TypeError(
                f"{name} has dtype {t.dtype} but {type(self).__name__} holds {own}; convert it "
                f"({name}.to({own})){supported}"
            )
        self._fast_dtype = own

    # -- the operator -------------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)`` on a tensor already checked to have shape ``(B, *x_shape)``."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the forward operator to ``x`` of shape ``(B, *x_shape)``."""
        if type(x) is torch.Tensor and x.dtype is self._fast_dtype and x.dim() == self._x_rank \
                and x.shape[1:] == self.x_shape:  # check_x's fast path, inlined (this is the hot path)
            return self._forward(x)
        return self._forward(self._check_x_full(x, "x"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def vjp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector-Jacobian product ``J_A(x)^T v`` (equal to ``A_adjoint(v)`` when linear)."""
        self.check_y(v, "v")
        with torch.enable_grad():
            x = self.check_x(x).detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._forward(x), x, grad_outputs=v)
        return grad

    def __matmul__(self, inner: Operator) -> Operator:
        """``self @ inner``: the composition ``x -> self(inner(x))`` (:func:`~invsolve.operators.algebra.compose`)."""
        from invsolve.operators.algebra import compose

        if not isinstance(inner, Operator):
            return NotImplemented
        return compose(self, inner)

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, y_shape={self.y_shape}"


class LinearOperator(Operator):
    """A linear operator with an exact adjoint ``A_adjoint``."""

    linear = True

    @abc.abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` on a tensor already checked to have shape ``(B, *y_shape)``."""

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint to ``y`` of shape ``(B, *y_shape)``."""
        if type(y) is torch.Tensor and y.dtype is self._fast_dtype and y.dim() == self._y_rank \
                and y.shape[1:] == self.y_shape:  # check_y's fast path, inlined
            return self._adjoint(y)
        return self._adjoint(self._check_y_full(y, "y"))

    def vjp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.A_adjoint(v)

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(self.check_x(x)))

    def pseudo_inverse(
        self, y: torch.Tensor, *, damping: float = 0.0, max_iter: int = 100, tol: float = 1e-6
    ) -> torch.Tensor:
        """Least-squares solution of ``min ||A x - y||^2 + damping ||x||^2`` by conjugate gradients.

        Starts from zero, so in the undetermined case it converges to the
        minimum-norm solution. Subclasses with a closed form override this.
        """
        rhs = self.A_adjoint(y)
        return conjugate_gradient(lambda v: self.A_adjoint_A(v) + damping * v, rhs, max_iter=max_iter, tol=tol)

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thin SVD ``A = U diag(S) V^T`` on flattened tensors: ``(U (m, k), S (k,), V (n, k))``.

        This default builds the dense matrix (:func:`~invsolve.operators.linalg.dense_svd`), so it
        is for small problems (e.g. 64x64 images); structured operators override it. The result is
        memoised on the instance and recomputed whenever one of the operator's tensors (buffers,
        parameters, also of sub-operators) is replaced, moved or modified in place (tracked by
        ``data_ptr`` and torch's in-place version counter). Treat the returned tensors as read-only.
        """
        from invsolve.operators.linalg import dense_svd

        signature = tuple((t.data_ptr(), t._version, t.dtype, str(t.device), tuple(t.shape))
                          for t in (*self.buffers(), *self.parameters()))
        memo = self.__dict__.get("_svd_memo")
        if memo is not None and memo[0] == signature:
            return memo[1]
        result = dense_svd(self)
        self.__dict__["_svd_memo"] = (signature, result)
        return result

    def operator_norm(self, *, generator: torch.Generator, iterations: int = 50,
                      dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> float:
        """Largest singular value, by power iteration on ``A^T A`` from a start drawn from ``generator``."""
        require_generator(generator)
        v = torch.randn((1, *self.x_shape), generator=generator, dtype=dtype, device=device)
        v = v / v.norm()
        sq = torch.zeros((), dtype=dtype)
        for _ in range(iterations):
            w = self.A_adjoint_A(v)
            sq = (v * w).sum()
            v = w / w.norm().clamp_min(torch.finfo(dtype).tiny)
        return float(sq.clamp_min(0).sqrt())


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Solve ``apply(x) = rhs`` for a symmetric positive semi-definite ``apply``, batch item by batch item.

    Every batch item runs its own CG recursion (step sizes are per item); the
    loop stops when all items reach ``||r|| <= tol * ||rhs||``.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    dims = tuple(range(1, rhs.dim()))
    r = rhs - apply(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs = (r * r).sum(dim=dims, keepdim=True)
    stop = (tol**2) * (rhs * rhs).sum(dim=dims, keepdim=True)
    tiny = torch.finfo(rhs.dtype).tiny
    for _ in range(max_iter):
        if bool((rs <= stop).all()):
            break
        Ap = apply(p)
        pAp = (p * Ap).sum(dim=dims, keepdim=True)
        alpha = torch.where(pAp > tiny, rs / pAp.clamp_min(tiny), torch.zeros_like(pAp))
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = (r * r).sum(dim=dims, keepdim=True)
        beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + beta * p
        rs = rs_new
    return x


class DeepinvLinearOperator(LinearOperator):
    """A :class:`LinearOperator` over a deepinv ``LinearPhysics`` object.

    The physics object is kept as :attr:`physics` (a registered submodule, so
    ``.to(device)`` moves its buffers); its ``A`` and ``A_adjoint`` are called
    directly, with only our shape check in front.
    """

    def __init__(self, physics: nn.Module, x_shape: Sequence[int], y_shape: Sequence[int]) -> None:
        super().__init__(x_shape, y_shape)
        self.physics = physics

    # ``self._modules[...]`` skips nn.Module.__getattr__, which would cost about a microsecond per call.
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._modules["physics"].A(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._modules["physics"].A_adjoint(y)
