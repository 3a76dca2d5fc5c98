"""Forward operators, importable as ``invsolve.operators``.

Every operator maps ``(B, *x_shape) -> (B, *y_shape)`` and linear ones have an
exact adjoint. They are built on deepinv's physics.

Complex data convention: a complex array is a real tensor whose channel axis
(axis 1) has size 2, holding (real, imaginary). The real inner product of two
such tensors equals ``Re <u, v>``, so ``A_adjoint`` is the complex adjoint.
"""

from invsolve.operators.base import DeepinvLinearOperator, LinearOperator, Operator, conjugate_gradient
from invsolve.operators.matrix import MatrixOperator

__all__ = [
    "DeepinvLinearOperator",
    "LinearOperator",
    "MatrixOperator",
    "Operator",
    "conjugate_gradient",
]
