"""Operator algebra: composition ``A @ B`` and the real-to-complex embedding.

``outer @ inner`` (or :func:`compose`) is the operator ``x -> outer(inner(x))``; it is linear,
with adjoint ``inner^T outer^T``, when both factors are. :class:`RealToComplex` embeds a real
image as a complex one with zero imaginary part (channel axis ``1 -> 2``, the package's complex
convention); its adjoint keeps the real channel. Together they let a prior of real magnitude
images drive a complex MRI operator: ``SingleCoilMRI(mask) @ RealToComplex((1, H, W))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from invsolve.operators.base import LinearOperator, Operator


class RealToComplex(LinearOperator):
    """``(B, 1, *S) -> (B, 2, *S)``: the real channel is copied, the imaginary one is zero.

    The adjoint returns the real channel (``Re``), so ``A^T A = I``. The operator holds no
    data; an empty buffer carries its dtype and device through ``.to()``.
    """

    def __init__(self, x_shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) < 2 or x_shape[0] != 1 or any(s < 1 for s in x_shape):
            raise ValueError(f"x_shape must be (1, *spatial) with positive sizes, got {x_shape}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        super().__init__(x_shape, (2, *x_shape[1:]))
        self.register_buffer("_dtype_anchor", torch.empty(0, dtype=dtype, device=device))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.zeros_like(x)], dim=1)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, :1]


def _check_chain(outer: Operator, inner: Operator) -> None:
    for name, op in (("outer", outer), ("inner", inner)):
        if not isinstance(op, Operator):
            raise TypeError(f"{name} must be an invsolve Operator, got {type(op).__name__}")
    if inner.y_shape != outer.x_shape:
        raise ValueError(
            f"cannot compose: inner operator {type(inner).__name__} produces items of shape {inner.y_shape} "
            f"but outer operator {type(outer).__name__} expects {outer.x_shape}"
        )
    if outer.dtype is not None and inner.dtype is not None and outer.dtype != inner.dtype:
        raise TypeError(f"cannot compose operators of dtypes {outer.dtype} (outer) and {inner.dtype} (inner)")


class Composition(Operator):
    """``x -> outer(inner(x))`` for any two operators; the VJP comes from autograd."""

    def __init__(self, outer: Operator, inner: Operator) -> None:
        _check_chain(outer, inner)
        super().__init__(inner.x_shape, outer.y_shape)
        self.outer, self.inner = outer, inner

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.A(self.inner.A(x))


class LinearComposition(LinearOperator):
    """``outer @ inner`` of two linear operators, adjoint ``inner^T outer^T``."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        _check_chain(outer, inner)
        super().__init__(inner.x_shape, outer.y_shape)
        self.outer, self.inner = outer, inner

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.A(self.inner.A(x))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.A_adjoint(self.outer.A_adjoint(y))


def compose(outer: Operator, inner: Operator) -> Operator:
    """``outer ∘ inner``: a :class:`LinearComposition` when both are linear, else a :class:`Composition`."""
    if getattr(outer, "linear", False) and getattr(inner, "linear", False):
        return LinearComposition(outer, inner)
    return Composition(outer, inner)
