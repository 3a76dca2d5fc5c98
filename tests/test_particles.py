"""The weighted-particle engine: ESS, resampling schemes, evidence bookkeeping, degeneracy handling."""

import math

import pytest
import torch

from invsolve.samplers.particles import (
    ParticleWeights,
    WeightDegeneracyError,
    check_smc_options,
    effective_sample_size,
    gather_particles,
    in_chunks,
    multinomial_indices,
    resample_indices,
    systematic_indices,
)


def test_ess_extremes_and_formula():
    n = 10
    assert torch.allclose(effective_sample_size(torch.zeros(n, 1, dtype=torch.float64)), torch.tensor([10.0], dtype=torch.float64))
    one_hot = torch.full((n, 1), -math.inf, dtype=torch.float64)
    one_hot[3] = 0.0
    assert float(effective_sample_size(one_hot)) == pytest.approx(1.0)
    lw = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5 + 700  # no overflow
    w = torch.softmax(lw, 0)
    assert torch.allclose(effective_sample_size(lw), 1 / w.square().sum(0))


def test_systematic_counts_are_floor_or_ceil_of_expected():
    g = torch.Generator().manual_seed(1)
    n = 50
    lw = torch.randn(n, 4, dtype=torch.float64, generator=g) * 2
    expected = n * torch.softmax(lw, 0)
    for _ in range(20):
        idx = systematic_indices(lw, g)
        for b in range(4):
            counts = torch.bincount(idx[:, b], minlength=n).double()
            assert torch.all(counts >= expected[:, b].floor() - 1e-9)
            assert torch.all(counts <= expected[:, b].ceil() + 1e-9)


def test_multinomial_counts_are_unbiased():
    g = torch.Generator().manual_seed(2)
    n, reps = 20, 2000
    lw = torch.randn(n, 1, dtype=torch.float64, generator=g)
    w = torch.softmax(lw, 0)[:, 0]
    counts = torch.zeros(n, dtype=torch.float64)
    for _ in range(reps):
        counts += torch.bincount(multinomial_indices(lw, g)[:, 0], minlength=n).double()
    mean = counts / reps
    se = (n * w * (1 - w) / reps).sqrt()  # binomial standard error of the mean count
    assert torch.all((mean - n * w).abs() < 5 * se)


def test_resample_indices_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="resampling"):
        resample_indices(torch.zeros(3, 1), "stratified-ish", torch.Generator())


def test_reweight_accumulates_log_evidence_and_normalises():
    g = torch.Generator().manual_seed(3)
    pw = ParticleWeights.uniform(8, 2)
    inc1 = torch.randn(8, 2, dtype=torch.float64, generator=g) * 3 + 1000.0  # large offsets are centred away
    pw.reweight(inc1, 0)
    expected = torch.logsumexp(inc1, 0) - math.log(8)
    assert torch.allclose(pw.log_evidence, expected)
    assert torch.allclose(torch.logsumexp(pw.log_w, 0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    inc2 = torch.randn(8, 2, dtype=torch.float64, generator=g)
    before = pw.log_w.clone()
    pw.reweight(inc2, 1)
    assert torch.allclose(pw.log_evidence, expected + torch.logsumexp(before + inc2, 0))


def test_resampling_threshold_and_diagnostics():
    g = torch.Generator().manual_seed(4)
    pw = ParticleWeights.uniform(16, 2)
    inc = torch.zeros(16, 2, dtype=torch.float64)
    inc[0, 1] = 50.0  # measurement 1 collapses on particle 0; measurement 0 stays uniform
    pw.reweight(inc, 0)
    idx = pw.resample(0.5, "systematic", g)
    assert idx is not None
    assert torch.equal(idx[:, 0], torch.arange(16))  # not due: kept
    assert torch.all(idx[:, 1] == 0)
    assert torch.allclose(pw.log_w, torch.full((16, 2), -math.log(16), dtype=torch.float64))
    assert pw.resample(0.5, "systematic", g) is None  # uniform now: ESS = N > N / 2
    assert pw.resample(1.0, "multinomial", g) is not None  # threshold 1 resamples every step
    diag = pw.diagnostics()
    assert diag["ess"].shape == (3, 2)
    assert diag["resample_count"].tolist() == [1, 2]


def test_degenerate_increments_raise_clear_errors():
    pw = ParticleWeights.uniform(4, 1)
    with pytest.raises(WeightDegeneracyError, match="NaN"):
        pw.reweight(torch.tensor([0.0, float("nan"), 0.0, 0.0]), 7)
    with pytest.raises(WeightDegeneracyError, match="weight zero"):
        pw.reweight(torch.full((4,), -math.inf), 8)
    pw.reweight(torch.tensor([-math.inf, -1e300, 0.0, -math.inf], dtype=torch.float64), 9)  # partial zeros recover
    assert torch.isfinite(pw.log_evidence).all()
    assert float(pw.log_w[2, 0]) == pytest.approx(0.0)
    pw.reweight(torch.tensor([-1e9, -1e9 - 1, -1e9 + 1, -1e9], dtype=torch.float64), 10)  # huge but finite: centred, no underflow
    assert torch.isfinite(pw.log_w[1:3]).all()


def test_gather_follows_the_sample_major_layout():
    n, b = 3, 2
    x = torch.arange(n * b, dtype=torch.float64)[:, None]  # item i * B + b
    idx = torch.tensor([[2, 0], [2, 1], [0, 1]])
    out = gather_particles(x, idx)[:, 0].tolist()
    assert out == [4.0, 1.0, 4.0, 3.0, 0.0, 3.0]


def test_in_chunks_matches_one_batch():
    x = torch.randn(10, 3)
    assert torch.equal(in_chunks(lambda t: t * 2, x, 3), x * 2)
    assert torch.equal(in_chunks(lambda t: t * 2, x, None), x * 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_particles=0, resampling="systematic", ess_threshold=0.5, chunk=None), "particles"),
    (dict(n_particles=4, resampling="residual", ess_threshold=0.5, chunk=None), "resampling"),
    (dict(n_particles=4, resampling="systematic", ess_threshold=1.5, chunk=None), "ess_threshold"),
    (dict(n_particles=4, resampling="systematic", ess_threshold=0.5, chunk=0), "chunk"),
])
def test_option_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_smc_options(**kwargs)
