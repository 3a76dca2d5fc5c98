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
