"""DiffusionMBIR building blocks: the slice-stack prior, TV along z, CG, the ADMM step, and the sampler."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators import RealToComplex, SingleCoilMRI, fastmri_mask
from invsolve.operators.base import LinearOperator
from invsolve.priors import GaussianPrior
from invsolve.priors.slice_stack import SliceStackPrior
from invsolve.operators.finite_difference import finite_difference, finite_difference_adjoint
from invsolve.samplers.mbir3d import admm_tv_step, diff_z, diff_z_adjoint, mbir3d, soft_threshold

D, H, W = 6, 8, 8


def _prior2d() -> GaussianPrior:
    return GaussianPrior(torch.full((1, H, W), 0.5), 0.05, sigma_max=20.0)


def _problem(seed: int = 0):
    mask = fastmri_mask((H, W), 2, 0.25, seed=0)
    op = SingleCoilMRI(mask, (D, H, W)) @ RealToComplex((1, D, H, W))
    truth = 0.5 + 0.2 * torch.rand(1, 1, 1, H, W, generator=torch.Generator().manual_seed(seed)).expand(1, 1, D, H, W)
    meas = Measurement.simulate(op, GaussianNoise(0.01), truth.contiguous(), torch.Generator().manual_seed(1))
    return op, truth, meas


def test_slice_stack_prior_denoises_each_slice_in_any_chunking():
    prior2d = _prior2d()
    x = torch.randn(2, 1, D, H, W, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.stack([prior2d.denoise(x[:, :, d], 0.7) for d in range(D)], dim=2)
    for chunk in (1, 4, 100):
        torch.testing.assert_close(SliceStackPrior(prior2d, D, chunk=chunk).denoise(x, 0.7), expected)
    per_item = SliceStackPrior(prior2d, D, chunk=5).denoise(x, torch.tensor([0.7, 2.0], dtype=torch.float64))
    torch.testing.assert_close(per_item[1], prior2d.denoise(x[1].transpose(0, 1), 2.0).transpose(0, 1))
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        SliceStackPrior(prior2d, D, chunk=0)


def test_tv_z_operators_are_adjoint_and_the_prox_is_right():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, D, H, W, generator=g, dtype=torch.float64), torch.randn(2, 1, D, H, W, generator=g,
                                                                                   dtype=torch.float64)
    assert torch.allclose((diff_z(a) * b).sum(), (a * diff_z_adjoint(b)).sum(), rtol=1e-12)
    for axis in (-3, -2, -1):
        assert torch.allclose((finite_difference(a, (axis,)) * b[None]).sum(),
                              (a * finite_difference_adjoint(b[None], (axis,))).sum(), rtol=1e-12)
    torch.testing.assert_close(finite_difference(a, (-1,))[0, ..., :-1], a[..., 1:] - a[..., :-1])
    assert torch.equal(diff_z(a)[..., -1, :, :], torch.zeros_like(a[..., -1, :, :]))
    torch.testing.assert_close(soft_threshold(torch.tensor([-3.0, -0.5, 0.2, 2.0]), 1.0),
                               torch.tensor([-2.0, 0.0, 0.0, 1.0]))


def test_admm_step_lowers_the_objective_it_targets():
    op, truth, meas = _problem()
    start = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(2))
    for weights in ({-3: 0.05}, {-3: 0.05, -2: 0.02, -1: 0.02}):
        def objective(v):
            return 0.5 * float((op.A(v) - meas.y).square().sum()) + sum(
                w * float(finite_difference(v, (a,)).abs().sum()) for a, w in weights.items())

        x = start
        z = u = torch.zeros((len(weights), *x.shape))
        for _ in range(20):
            x, z, u = admm_tv_step(x, z, u, op, meas.y, weights=weights, admm_rho=1.0, cg_iterations=3)
        assert objective(x) < 0.5 * objective(start)


def test_mbir3d_couples_slices_and_is_chunk_invariant():
    op, truth, meas = _problem()
    prior = SliceStackPrior(_prior2d(), D, chunk=2)

    def run(lam: float, chunk: int = 2, seed: int = 0):
        p = SliceStackPrior(_prior2d(), D, chunk=chunk)
        return mbir3d(meas, p, steps=20, n_samples=2, generator=torch.Generator().manual_seed(seed), lam=lam,
                      admm_rho=1.0, cg_iterations=2)

    coupled, independent = run(0.5), run(0.0)
    assert coupled.samples.shape == (2, 1, 1, D, H, W) and coupled.nfe == 20
    assert torch.isfinite(coupled.samples).all()
    tv = lambda out: float(diff_z(out.samples[:, 0]).abs().mean())  # noqa: E731
    assert tv(coupled) < 0.5 * tv(independent)  # the truth is constant along z; TV-z makes the slices agree
    err = lambda out: float((out.mean - truth).square().mean())  # noqa: E731
    assert err(coupled) < err(independent)
    torch.testing.assert_close(run(0.5, chunk=5).samples, coupled.samples)  # memory knob, same result
    assert torch.equal(run(0.5).samples, coupled.samples)
    with pytest.raises(TypeError, match="SliceStackPrior"):
        mbir3d(meas, _prior2d(), steps=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="cg_iterations"):
        mbir3d(meas, prior, steps=2, generator=torch.Generator(), cg_iterations=0)
    with pytest.raises(ValueError, match="consistency"):
        mbir3d(meas, prior, steps=2, generator=torch.Generator(), consistency="both")


def test_mbir3d_on_denoised_estimates_fits_the_data():
    op, truth, meas = _problem()
    prior = SliceStackPrior(_prior2d(), D, chunk=3)
    runs = {c: mbir3d(meas, prior, steps=20, n_samples=2, generator=torch.Generator().manual_seed(0), lam=0.5,
                      admm_rho=1.0, cg_iterations=5, consistency=c) for c in ("iterate", "denoised")}
    for out in runs.values():
        assert torch.isfinite(out.samples).all()
        assert float((out.mean - truth).square().mean()) < float((0.5 - truth).square().mean())  # beats the prior mean


class _Scaled(LinearOperator):
    """``c A``: the same problem in other units."""

    def __init__(self, op: LinearOperator, c: float) -> None:
        super().__init__(op.x_shape, op.y_shape)
        self.op, self.c = op, c

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.A(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.c * self.op.A_adjoint(y)


def test_mbir3d_weights_are_relative_to_the_operator_scale_and_in_plane_tv_is_optional():
    op, truth, meas = _problem()
    prior = SliceStackPrior(_prior2d(), D, chunk=3)
    c = 7.0
    scaled = Measurement(_Scaled(op, c), GaussianNoise(0.01 * c), c * meas.y)

    def run(m, **kw):
        return mbir3d(m, prior, steps=10, generator=torch.Generator().manual_seed(0), lam=0.05, admm_rho=0.5, **kw)

    base = run(meas, operator_norm=1.0)
    torch.testing.assert_close(run(scaled, operator_norm=c).samples, base.samples, rtol=1e-4, atol=1e-5)
    assert base.diagnostics["tv_weights_absolute"] == {-3: 0.05}
    estimated = run(scaled)  # power iteration: ||c A|| = c for this MRI operator
    assert estimated.diagnostics["operator_norm"] == pytest.approx(c, rel=1e-3)
    with_xy = run(meas, operator_norm=1.0, lam_xy=0.05)
    assert set(with_xy.diagnostics["tv_weights_absolute"]) == {-3, -2, -1}
    in_plane_tv = lambda out: float(finite_difference(out.samples[:, 0], (-1,)).abs().mean())  # noqa: E731
    assert in_plane_tv(with_xy) < in_plane_tv(base)
    for bad in ({"lam_xy": -1.0}, {"operator_norm": 0.0}, {"admm_iterations": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            run(meas, **bad)


def test_mbir3d_corrector_steps_cost_network_calls_and_keep_the_fit():
    op, truth, meas = _problem()
    prior = SliceStackPrior(_prior2d(), D, chunk=4)
    out = mbir3d(meas, prior, steps=10, generator=torch.Generator().manual_seed(0), lam=0.5, admm_rho=1.0,
                 corrector_steps=2, snr=0.1)
    assert out.nfe == 30 and torch.isfinite(out.samples).all()
    assert float((out.mean - truth).square().mean()) < float((0.5 - truth).square().mean())
