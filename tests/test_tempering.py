"""Adaptive tempering (conditional ESS, the exponent bisection) and the MALA move of resample-move."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve.samplers.tempering import adapt_step, conditional_ess, mala_move, next_exponent

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_conditional_ess_of_uniform_weights_is_kish_ess():
    """With uniform current weights CESS / N is Kish's ESS / N of the increments; a zero increment gives 1."""
    n = 50
    log_w = torch.full((n, 1), -math.log(n), dtype=F64)
    inc = torch.randn(n, 1, generator=gen(0), dtype=F64)
    w = inc.exp()
    assert conditional_ess(log_w, inc).item() == pytest.approx(float(w.sum() ** 2 / (n * w.square().sum())))
    assert conditional_ess(log_w, torch.zeros(n, 1, dtype=F64)).item() == pytest.approx(1.0)


def test_next_exponent_hits_the_target_cess():
    n = 400
    log_w = torch.full((n, 2), -math.log(n), dtype=F64)
    ll = -0.5 * torch.randn(n, 2, generator=gen(1), dtype=F64).square() * torch.tensor([50.0, 5.0], dtype=F64)
    beta = next_exponent(log_w, ll, 0.2, 1.0, 0.5)
    assert 0.2 < beta < 1.0
    cess = conditional_ess(log_w, (beta - 0.2) * ll)
    assert cess.min().item() == pytest.approx(0.5, abs=1e-6)  # the binding column sits on the target
    assert next_exponent(log_w, 1e-6 * ll, 0.2, 1.0, 0.5) == 1.0  # a flat likelihood goes straight to the end


def test_mala_leaves_a_gaussian_invariant_and_adapts_its_step():
    """Start exactly in N(1, 0.25 I); 20 MALA moves keep mean and variance within 5 standard errors."""
    n, d = 20000, 3
    x = 1 + 0.5 * torch.randn(n, d, generator=gen(2), dtype=F64)
    log_target = lambda z: -2.0 * (z - 1).square().sum(1)  # noqa: E731
    grad = lambda z: -4.0 * (z - 1)  # noqa: E731
    delta, rates = 0.4, []
    for _ in range(20):
        x, acc = mala_move(x, log_target, grad, delta, gen(3 + len(rates)))
        rates.append(float(acc.double().mean()))
        delta = adapt_step(delta, rates[-1])
    assert ((x.mean(0) - 1).abs() < 5 * math.sqrt(0.25 / n)).all()
    assert ((x.var(0) - 0.25).abs() < 5 * 0.25 * math.sqrt(2 / n)).all()
    assert 0.4 < rates[-1] < 0.8  # adapted towards 0.574


def test_fkc_tempering_refuses_a_bad_target():
    from invsolve import GaussianNoise, Measurement
    from invsolve.operators import MatrixOperator
    from invsolve.priors import GaussianPrior
    from invsolve.samplers import fkc

    prior = GaussianPrior(torch.zeros(2, dtype=F64), 1.0)
    meas = Measurement.simulate(MatrixOperator(torch.eye(2, dtype=F64)), GaussianNoise(0.1), prior.sample(1, gen(0)),
                                gen(1))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="cess_target"):
            fkc(meas, prior, n_samples=8, steps=5, generator=gen(2), cess_target=bad)
