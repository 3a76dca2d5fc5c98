"""Small operators shared by the sampler and exact-posterior tests (on the test path via pytest's ``pythonpath``)."""

import math

import torch

from invsolve.operators import LinearOperator
from invsolve.priors import GaussianMixturePrior


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


def cardoso_gmm(d: int, seed: int) -> GaussianMixturePrior:
    """The 25-component GMM prior of Cardoso et al. (2024) in ``R^d``, weights drawn from ``seed`` (float64)."""
    grid = [(i, j) for i in range(-2, 3) for j in range(-2, 3)]
    means = torch.tensor([[-8.0 * i, -8.0 * j] * (d // 2) for i, j in grid], dtype=torch.float64)
    w = torch.randn(25, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).square()
    return GaussianMixturePrior(w, means, 1.0)


def fastmri_evaluate(targets, predictions, challenge: str) -> dict[str, tuple[str, str]]:
    """Run fastMRI's own scorer, ``python -m fastmri.evaluate``, and parse its printout.

    Returns ``{metric: (mean, two_std)}`` as the printed strings (4 significant digits, ``+/-`` is two
    sample standard deviations over volumes).
    """
    import re
    import subprocess
    import sys

    args = ["--target-path", str(targets), "--predictions-path", str(predictions), "--challenge", challenge]
    run = subprocess.run([sys.executable, "-m", "fastmri.evaluate", *args], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return {m[0]: (m[1], m[2]) for m in re.findall(r"(\w+) = (\S+) \+/- (\S+)", run.stdout)}
