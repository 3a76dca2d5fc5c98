"""Weighted quantiles and interval coverage."""

import pytest
import torch

from invsolve.metrics import interval_coverage, iid_interval_coverage, weighted_quantile


def test_weighted_quantile_matches_repetition():
    s = torch.tensor([[3.0], [1.0], [2.0]])
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    # equivalent to the multiset {1, 2, 3, 3}
    assert float(weighted_quantile(s, 0.25, w)) == 1.0
    assert float(weighted_quantile(s, 0.5, w)) == 2.0
    assert float(weighted_quantile(s, 0.51, w)) == 3.0
    assert float(weighted_quantile(s, 0.99)) == 3.0


def test_coverage_of_exact_draws_is_near_the_level():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(4000, 50, 50, generator=g, dtype=torch.float64)
    truth = torch.randn(50, 50, generator=g, dtype=torch.float64)
    cov = interval_coverage(truth, samples, level=0.9)
    assert abs(cov - 0.9) < 5 * (0.9 * 0.1 / 2500) ** 0.5 + 0.01


def test_iid_coverage_formula_for_few_draws():
    # lower-step quantiles of n draws: the interval [x_(k), x_(n+1-k)] with k = ceil(0.05 n) covers (n+1-2k)/(n+1)
    assert iid_interval_coverage(4) == pytest.approx(3 / 5, abs=0.02)
    assert iid_interval_coverage(16) == pytest.approx(15 / 17, abs=0.02)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="level"):
        interval_coverage(torch.zeros(3), torch.zeros(5, 3), level=1.5)
    with pytest.raises(ValueError, match="shape"):
        interval_coverage(torch.zeros(4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="weights"):
        weighted_quantile(torch.zeros(5, 3), 0.5, torch.ones(4))


def test_randomized_pit_is_uniform_for_exact_draws_at_any_n():
    """Truth and 7 draws i.i.d.: the PIT is exactly uniform, so every central band covers its level (5 SE)."""
    from invsolve.metrics import central_coverage, pit_histogram, randomized_pit, uniformity_distance

    g = torch.Generator().manual_seed(0)
    m = 40000
    samples, truth = torch.randn(7, m, generator=g), torch.randn(m, generator=g)
    pit = randomized_pit(truth, samples, generator=g)
    for level in (0.5, 0.9):
        se = (level * (1 - level) / m) ** 0.5
        assert abs(central_coverage(pit, level) - level) < 5 * se
    assert uniformity_distance(pit_histogram(pit, 10)) < 0.02
    # draws too narrow by 2x: the truth falls outside them too often (U-shaped histogram)
    narrow = randomized_pit(truth, 0.5 * samples, generator=g)
    assert central_coverage(narrow, 0.9) < 0.8 and uniformity_distance(pit_histogram(narrow, 10)) > 0.1


def test_weighted_pit_and_standardized_errors_match_repetition():
    from invsolve.metrics import randomized_pit, standardized_errors

    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 50, generator=g, dtype=torch.float64)
    truth = torch.randn(50, generator=g, dtype=torch.float64)
    w = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    repeated = torch.cat([base[:1]] * 4 + [base[1:2]] * 2 + [base[2:3], base[3:4]])
    a = randomized_pit(truth, base, w, generator=torch.Generator().manual_seed(2))
    b = randomized_pit(truth, repeated, generator=torch.Generator().manual_seed(2))
    # same weight below the truth; the (N + 1) denominators differ, so compare the weight below
    assert torch.allclose(((a * 5) - torch.rand(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)) / 4,
                          ((b * 9) - torch.rand(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)) / 8)
    assert torch.allclose(standardized_errors(truth, base, w), standardized_errors(truth, repeated))
