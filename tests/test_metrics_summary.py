"""Mean and Student-t interval of per-image scores."""

import math

import pytest

from invsolve.metrics import format_interval, mean_confidence_interval


def test_mean_confidence_interval_matches_the_t_formula():
    values = [1.0, 2.0, 4.0, 7.0]
    mean, half = mean_confidence_interval(values)
    sd = math.sqrt(sum((v - 3.5) ** 2 for v in values) / 3)
    assert mean == 3.5 and abs(half - 3.182446305284263 * sd / 2) < 1e-12  # t_{0.975, 3}
    assert math.isnan(mean_confidence_interval([2.0])[1])
    assert format_interval(values, 1) == f"3.5 +- {half:.1f}"
    with pytest.raises(ValueError, match="at least one"):
        mean_confidence_interval([])
