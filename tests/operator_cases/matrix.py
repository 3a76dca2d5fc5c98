import torch

from invsolve.operators import DeepinvLinearOperator, MatrixOperator


def matrix_operator(dtype):
    g = torch.Generator().manual_seed(0)
    return MatrixOperator(torch.randn(5, 12, generator=g, dtype=dtype))


def deepinv_wrapper(dtype):
    import deepinv

    physics = deepinv.physics.Decolorize(device="cpu")
    return DeepinvLinearOperator(physics.to(dtype), x_shape=(3, 8, 8), y_shape=(1, 8, 8))


CASES = {
    "MatrixOperator": (matrix_operator, True),
    "DeepinvLinearOperator-decolorize": (deepinv_wrapper, True),
}
