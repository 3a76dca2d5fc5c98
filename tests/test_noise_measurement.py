"""NoiseModel and Measurement: sampling agrees with log-likelihood, gradients are exact, bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve import GaussianNoise, Measurement, PoissonNoise
from invsolve.operators import MatrixOperator, Operator


def matrix_op(m=4, n=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MatrixOperator(torch.randn(m, n, generator=g, dtype=dtype))


class Square(Operator):
    """A small nonlinear operator for VJP tests: elementwise square of a linear map."""

    def __init__(self, matrix):
        super().__init__((matrix.shape[1],), (matrix.shape[0],))
        self.register_buffer("matrix", matrix)

    def _forward(self, x):
        return (x @ self.matrix.T) ** 2


# -- noise models ----------------------------------------------------------------------
def test_gaussian_log_likelihood_is_the_normal_density():
    noise = GaussianNoise(0.3)
    Ax = torch.zeros(2, 5, dtype=torch.float64)
    y = torch.full((2, 5), 0.3, dtype=torch.float64)
    expected = 5 * (-0.5 - 0.5 * math.log(2 * math.pi * 0.09))
    torch.testing.assert_close(noise.log_likelihood(y, Ax), torch.full((2,), expected, dtype=torch.float64))


def test_gaussian_sample_moments_match_sigma():
    noise = GaussianNoise(0.5)
    Ax = torch.ones(1, 200_000, dtype=torch.float64)
    y = noise.sample(Ax, torch.Generator().manual_seed(0))
    n = y.numel()
    # mean within 4 standard errors, variance within 4 SE of the sample variance (2 sigma^4 / n for Gaussians)
    assert abs(float(y.mean()) - 1.0) < 4 * 0.5 / math.sqrt(n)
    assert abs(float(y.var()) - 0.25) < 4 * math.sqrt(2 * 0.5**4 / n)


def test_gaussian_grad_matches_autograd():
    noise = GaussianNoise(0.2)
    g = torch.Generator().manual_seed(1)
    y, Ax = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    Ax.requires_grad_(True)
    (auto,) = torch.autograd.grad(noise.log_likelihood(y, Ax).sum(), Ax)
    torch.testing.assert_close(noise.grad_log_likelihood(y, Ax.detach()), auto)


def test_gaussian_sigma_zero_is_explicit():
    noise = GaussianNoise(0.0)
    assert noise.is_noiseless
    Ax = torch.randn(2, 3)
    y = noise.sample(Ax, torch.Generator().manual_seed(0))
    assert torch.equal(y, Ax)
    ll = noise.log_likelihood(y, Ax)
    assert torch.equal(ll, torch.zeros(2))
    assert torch.isinf(noise.log_likelihood(y + 1e-3, Ax)).all()
    with pytest.raises(ValueError, match="hard data constraint"):
        noise.grad_log_likelihood(y, Ax)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_gaussian_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(sigma)


def test_gaussian_rejects_non_number_sigma():
    with pytest.raises(TypeError, match="sigma"):
        GaussianNoise("0.1")


def test_poisson_log_likelihood_matches_scipy():
    from scipy.stats import poisson

    gain = 0.5
    noise = PoissonNoise(gain)
    Ax = torch.tensor([[0.0, 1.0, 2.5, 4.0]], dtype=torch.float64)
    y = noise.sample(Ax, torch.Generator().manual_seed(3))
    expected = poisson.logpmf((y / gain).numpy(), (Ax / gain).numpy()).sum()
    assert float(noise.log_likelihood(y, Ax)) == pytest.approx(float(expected), rel=1e-12)


def test_poisson_grad_matches_autograd_and_moments():
    noise = PoissonNoise(0.25)
    Ax = torch.full((1, 100_000), 2.0, dtype=torch.float64)
    y = noise.sample(Ax, torch.Generator().manual_seed(0))
    # E[y] = Ax and Var[y] = gain * Ax
    assert abs(float(y.mean()) - 2.0) < 4 * math.sqrt(0.25 * 2.0 / y.numel())
    Ax_small = torch.tensor([[0.5, 1.5, 3.0]], dtype=torch.float64, requires_grad=True)
    y_small = torch.tensor([[0.25, 1.5, 2.75]], dtype=torch.float64)
    (auto,) = torch.autograd.grad(noise.log_likelihood(y_small, Ax_small).sum(), Ax_small)
    torch.testing.assert_close(noise.grad_log_likelihood(y_small, Ax_small.detach()), auto)


def test_poisson_zero_count_at_zero_rate_is_finite():
    noise = PoissonNoise(1.0)
    Ax = torch.zeros(1, 3)
    y = torch.zeros(1, 3)
    assert torch.equal(noise.log_likelihood(y, Ax), torch.zeros(1))
    assert torch.isfinite(noise.grad_log_likelihood(y, Ax)).all()


def test_poisson_rejects_negative_rate_and_measurement():
    noise = PoissonNoise(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        noise.sample(torch.tensor([[-1.0]]))
    op = matrix_op()
    with pytest.raises(ValueError, match="y must be non-negative"):
        Measurement(op, noise, -torch.ones(1, 4, dtype=torch.float64))


# -- measurement ---------------------------------------------------------------------------
def test_measurement_gradient_is_adjoint_for_linear_operator():
    op = matrix_op()
    g = torch.Generator().manual_seed(0)
    x_true = torch.randn(2, 6, generator=g, dtype=torch.float64)
    meas = Measurement.simulate(op, GaussianNoise(0.1), x_true, g)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    expected = (meas.y - x @ op.matrix.T) @ op.matrix / 0.01
    torch.testing.assert_close(meas.grad_log_likelihood(x), expected)
    torch.testing.assert_close(meas.grad_data_fidelity(x), -expected * 0.01)
    torch.testing.assert_close(meas.residual(x), meas.y - x @ op.matrix.T)


def test_measurement_gradient_for_nonlinear_operator_is_the_vjp():
    g = torch.Generator().manual_seed(0)
    op = Square(torch.randn(3, 5, generator=g, dtype=torch.float64))
    meas = Measurement.simulate(op, GaussianNoise(0.5), torch.randn(2, 5, generator=g, dtype=torch.float64), g)
    x = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(meas.log_likelihood(x).sum(), x)
    torch.testing.assert_close(meas.grad_log_likelihood(x.detach()), auto)


def test_measurement_broadcasts_single_y_over_particles():
    op = matrix_op()
    meas = Measurement.simulate(op, GaussianNoise(0.1), torch.randn(1, 6, dtype=torch.float64))
    particles = torch.randn(7, 6, dtype=torch.float64)
    assert meas.log_likelihood(particles).shape == (7,)
    assert meas.grad_log_likelihood(particles).shape == (7, 6)


def test_measurement_rejects_batch_mismatch():
    op = matrix_op()
    meas = Measurement(op, GaussianNoise(0.1), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch size"):
        meas.residual(torch.zeros(3, 6, dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_measurement_rejects_non_finite_y(bad):
    y = torch.zeros(1, 4, dtype=torch.float64)
    y[0, 2] = bad
    with pytest.raises(ValueError, match="y contains 1 NaN/Inf"):
        Measurement(matrix_op(), GaussianNoise(0.1), y)


def test_measurement_rejects_wrong_y_shape_dtype_and_types():
    op = matrix_op()
    with pytest.raises(ValueError, match="y must have shape"):
        Measurement(op, GaussianNoise(0.1), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="y has dtype torch.float32"):
        Measurement(op, GaussianNoise(0.1), torch.zeros(1, 4, dtype=torch.float32))
    with pytest.raises(TypeError, match="real floating dtype"):
        Measurement(op, GaussianNoise(0.1), torch.zeros(1, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        Measurement(op, GaussianNoise(0.1), [[0.0] * 4])
    with pytest.raises(TypeError, match="operator must be"):
        Measurement(lambda x: x, GaussianNoise(0.1), torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="noise must be"):
        Measurement(op, 0.1, torch.zeros(1, 4, dtype=torch.float64))


def test_sigma_y_only_for_gaussian():
    op = matrix_op()
    assert Measurement(op, GaussianNoise(0.2), torch.zeros(1, 4, dtype=torch.float64)).sigma_y == 0.2
    with pytest.raises(TypeError, match="GaussianNoise"):
        Measurement(op, PoissonNoise(1.0), torch.zeros(1, 4, dtype=torch.float64)).sigma_y


def test_simulate_is_seeded():
    op = matrix_op()
    x = torch.randn(1, 6, dtype=torch.float64)
    a = Measurement.simulate(op, GaussianNoise(0.1), x, torch.Generator().manual_seed(5)).y
    b = Measurement.simulate(op, GaussianNoise(0.1), x, torch.Generator().manual_seed(5)).y
    c = Measurement.simulate(op, GaussianNoise(0.1), x, torch.Generator().manual_seed(6)).y
    assert torch.equal(a, b) and not torch.equal(a, c)
