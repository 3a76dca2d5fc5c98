"""Small operators shared by the sampler and exact-posterior tests (on the test path via pytest's ``pythonpath``)."""

import math

import torch

from invsolve.operators import LinearOperator


class Subsample(LinearOperator):
    """Keeps some pixels of an image: linear, with no stored matrix (PiGDM uses conjugate gradients)."""

    def __init__(self, x_shape, index):
        super().__init__(x_shape, (len(index),))
        self.register_buffer("index", torch.as_tensor(index))

    def _forward(self, x):
        return x.reshape(x.shape[0], -1)[:, self.index]

    def _adjoint(self, y):
        out = torch.zeros(y.shape[0], math.prod(self.x_shape), dtype=y.dtype, device=y.device)
        out[:, self.index] = y
        return out.reshape(y.shape[0], *self.x_shape)

    def svd(self):
        """Thin SVD of the selection matrix on flattened images: U = I, S = 1, V = selected unit vectors."""
        k, d = len(self.index), math.prod(self.x_shape)
        V = torch.eye(d, dtype=torch.float64)[:, self.index]
        return torch.eye(k, dtype=torch.float64), torch.ones(k, dtype=torch.float64), V
