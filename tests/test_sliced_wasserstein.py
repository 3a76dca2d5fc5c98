"""Sliced Wasserstein distance and its sampling floor."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import wasserstein_distance

from invsolve.metrics import sliced_wasserstein, sliced_wasserstein_floor, wasserstein_1d
from invsolve.metrics.distributions import random_directions

F64 = torch.float64


def test_1d_w1_matches_scipy_for_unequal_sizes_and_weights():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(9, 3, generator=g, dtype=F64)
    v = torch.randn(6, 3, generator=g, dtype=F64) + 0.7
    wu = torch.rand(9, generator=g, dtype=F64)
    wv = torch.rand(6, generator=g, dtype=F64)
    got = wasserstein_1d(u, v, wu, wv)
    want = [wasserstein_distance(u[:, i].numpy(), v[:, i].numpy(), wu.numpy(), wv.numpy()) for i in range(3)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-12)
    got = wasserstein_1d(u, v)
    want = [wasserstein_distance(u[:, i].numpy(), v[:, i].numpy()) for i in range(3)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-12)


def test_equal_sizes_use_sorted_differences():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(50, 4, generator=g, dtype=F64), torch.randn(50, 4, generator=g, dtype=F64)
    fast = wasserstein_1d(u, v)
    general = wasserstein_1d(u, v, torch.ones(50, dtype=F64))
    torch.testing.assert_close(fast, general, rtol=1e-12, atol=1e-12)


def test_sliced_distance_of_a_translation_is_the_mean_projected_shift():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(200, 5, generator=g, dtype=F64)
    shift = torch.tensor([3.0, -1.0, 0.0, 2.0, 0.5], dtype=F64)
    dirs = random_directions(5, 64, torch.Generator().manual_seed(3))
    assert torch.allclose(dirs.norm(dim=0), torch.ones(64, dtype=F64))
    got = sliced_wasserstein(a, a + shift, directions=dirs)
    assert got == pytest.approx(float((shift @ dirs).abs().mean()), rel=1e-12)
    assert sliced_wasserstein(a, a, 10, torch.Generator().manual_seed(0)) == 0.0


def test_seeded_and_shape_handling():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(100, 2, 3, generator=g)  # trailing dims are flattened
    b = torch.randn(80, 2, 3, generator=g) + 0.3
    one = sliced_wasserstein(a, b, 50, torch.Generator().manual_seed(7))
    assert one == sliced_wasserstein(a, b, 50, torch.Generator().manual_seed(7))
    assert one != sliced_wasserstein(a, b, 50, torch.Generator().manual_seed(8))
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(a, torch.randn(10, 7), 5)
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(a, torch.full((4, 2, 3), float("nan")), 5)


def test_floor_is_deterministic_and_shrinks_with_the_sample_size():
    def sample(n, gen):
        return torch.randn(n, 4, generator=gen, dtype=F64)

    small = sliced_wasserstein_floor(sample, 100, 50, torch.Generator().manual_seed(0))
    assert small == sliced_wasserstein_floor(sample, 100, 50, torch.Generator().manual_seed(0))
    big = sliced_wasserstein_floor(sample, 3000, 50, torch.Generator().manual_seed(0))
    assert 0 < big < small
    # W1 of two n-sample empirical N(0,1) sets is ~ 1/sqrt(n) in scale
    assert big < 0.1
    ref = sample(100, torch.Generator().manual_seed(9))
    assert sliced_wasserstein_floor(sample, 100, 50, torch.Generator().manual_seed(0), reference=ref) > 0
    with pytest.raises(ValueError, match="reference"):
        sliced_wasserstein_floor(sample, 50, 10, torch.Generator().manual_seed(0), reference=ref)
