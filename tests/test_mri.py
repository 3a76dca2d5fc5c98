"""MRI operators and sampling masks (operators/mri.py, operators/masks.py).

The generic operator contract (adjointness, VJP, batching, dtype) runs from
tests/operator_cases/mri.py; this file checks the MRI-specific behaviour: the
Fourier convention against explicit ``torch.fft`` references, pseudo-inverses,
zero-filled reconstructions, mask properties and input validation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invsolve.operators import (
    MultiCoilMRI,
    SingleCoilMRI,
    fastmri_mask,
    mask_acceleration,
    poisson_disc_mask,
    synthetic_coil_maps,
    variable_density_mask,
    variable_density_mask_2d,
)

F64 = torch.float64


def randn(*shape, seed=0, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def to_complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[:, 0], x[:, 1])


def centred_fft(z: torch.Tensor, dims) -> torch.Tensor:
    """Reference: centred orthonormal DFT (zero frequency at index n // 2)."""
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(z, dim=dims), dim=dims, norm="ortho"), dim=dims)


def random_mask(shape, p=0.4, seed=3) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).to(F64)


# -- Fourier convention -----------------------------------------------------------------
@pytest.mark.parametrize("hw", [(16, 16), (15, 12)])
def test_single_coil_2d_matches_centred_fft_reference(hw):
    mask = random_mask(hw)
    op = SingleCoilMRI(mask, dtype=F64)
    x = randn(2, 2, *hw)
    y = op.A(x)
    ref = mask * centred_fft(to_complex(x), (-2, -1))
    torch.testing.assert_close(to_complex(y), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.mask, mask)


def test_dc_sits_at_the_centre_index():
    h, w = 8, 6
    op = SingleCoilMRI(torch.ones(h, w), dtype=F64)
    x = torch.zeros(1, 2, h, w, dtype=F64)
    x[:, 0] = 1.0  # constant real image: all energy at k = 0
    y = op.A(x)
    expected = torch.zeros_like(y)
    expected[0, 0, h // 2, w // 2] = (h * w) ** 0.5  # orthonormal DFT
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_single_coil_3d_is_a_3d_fft_with_one_mask_for_all_depths():
    mask = variable_density_mask_2d((12, 16), 3, 0.2, seed=1, dtype=F64)
    op = SingleCoilMRI(mask, img_size=(4, 12, 16), dtype=F64)
    assert op.x_shape == op.y_shape == (2, 4, 12, 16)
    assert op.mask.shape == (12, 16)
    x = randn(2, 2, 4, 12, 16)
    ref = mask * centred_fft(to_complex(x), (-3, -2, -1))
    torch.testing.assert_close(to_complex(op.A(x)), ref, rtol=1e-12, atol=1e-12)
    # a full (D, H, W) mask repeating the 2D one gives the same operator
    full = SingleCoilMRI(mask.expand(4, 12, 16), dtype=F64)
    torch.testing.assert_close(full.A(x), op.A(x), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(16, 12), (3, 8, 10)])
def test_multi_coil_matches_reference(shape):
    maps = synthetic_coil_maps(4, shape, F64)
    mask = random_mask(shape)
    op = MultiCoilMRI(mask, maps, dtype=F64)
    assert op.y_shape == (2, 4, *shape) and op.n_coils == 4
    x = randn(2, 2, *shape)
    dims = tuple(range(-len(shape), 0))
    ref = mask * centred_fft(maps * to_complex(x)[:, None], dims)
    torch.testing.assert_close(torch.complex(op.A(x)[:, 0], op.A(x)[:, 1]), ref, rtol=1e-12, atol=1e-12)


# -- pseudo-inverse and zero-filled reconstructions ------------------------------------------
def test_single_coil_pseudo_inverse_is_exact_minimum_norm_least_squares():
    op = SingleCoilMRI(fastmri_mask((16, 16), 4, 0.125, "random", seed=2), dtype=F64)
    y = randn(3, 2, 16, 16, seed=5)  # not in the range of A
    x_plus = op.pseudo_inverse(y)
    normal = op.A_adjoint(op.A(x_plus) - y)
    assert float(normal.norm()) <= 1e-12 * float(y.norm())
    # minimum norm: x+ lies in range(A^T), i.e. it is fixed by the projector A^T A
    torch.testing.assert_close(op.A_adjoint_A(x_plus), x_plus, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.zero_filled(y), op.A_adjoint(y), rtol=0, atol=0)
    damped = op.pseudo_inverse(y, damping=0.5)
    torch.testing.assert_close(op.A_adjoint_A(damped) + 0.5 * damped, op.A_adjoint(y), rtol=1e-12, atol=1e-12)
    assert op.operator_norm() == 1.0


def test_multi_coil_pseudo_inverse_solves_normal_equations():
    maps = synthetic_coil_maps(3, (16, 16), F64)
    op = MultiCoilMRI(variable_density_mask((16, 16), 3, 0.125, seed=0), maps, dtype=F64)
    y = op.A(randn(2, 2, 16, 16)) + 0.1 * randn(2, *op.y_shape, seed=9)
    x_plus = op.pseudo_inverse(y, max_iter=300, tol=1e-12)
    normal = op.A_adjoint(op.A(x_plus) - y)
    assert float(normal.norm()) <= 1e-8 * float(op.A_adjoint(y).norm())


def test_multi_coil_zero_filled_combines_coils():
    shape = (12, 12)
    maps = synthetic_coil_maps(4, shape, F64)
    torch.testing.assert_close(maps.abs().square().sum(0), torch.ones(shape, dtype=F64))
    x = randn(2, 2, *shape)
    full = MultiCoilMRI(torch.ones(shape), maps, dtype=F64)
    torch.testing.assert_close(full.zero_filled(full.A(x)), x)  # S^H S = I
    torch.testing.assert_close(full.zero_filled(full.A(x), rss=True), x.square().sum(1, keepdim=True).sqrt())
    unnormalised = MultiCoilMRI(torch.ones(shape), 2 * maps, dtype=F64)
    torch.testing.assert_close(unnormalised.zero_filled(unnormalised.A(x)), x)
    under = MultiCoilMRI(random_mask(shape), maps, dtype=F64)
    y = under.A(x)
    torch.testing.assert_close(under.zero_filled(y), under.A_adjoint(y))


def test_to_float64_keeps_complex_coil_maps():
    maps = synthetic_coil_maps(3, (8, 8))
    op = MultiCoilMRI(torch.ones(8, 8), maps)
    ref = MultiCoilMRI(torch.ones(8, 8), maps.to(torch.complex128), dtype=F64)
    op = op.to(F64)
    assert op.dtype == F64 and op.coil_maps.dtype == torch.complex128
    torch.testing.assert_close(op.coil_maps, maps.to(torch.complex128))
    x = randn(1, 2, 8, 8)
    torch.testing.assert_close(op.A(x), ref.A(x), rtol=0, atol=0)


def test_bool_mask_and_acceleration_property():
    mask = variable_density_mask((16, 16), 4, 0.125, seed=0) > 0
    op = SingleCoilMRI(mask)
    assert op.acceleration == pytest.approx(4.0)
    assert op.mask.dtype == torch.float32


# -- masks --------------------------------------------------------------------------------
def centre_columns(w: int, fraction: float) -> slice:
    n = round(w * fraction)
    pad = (w - n + 1) // 2
    return slice(pad, pad + n)


@pytest.mark.parametrize("kind", ["equispaced", "random"])
def test_fastmri_mask_properties(kind):
    h, w, acc, cf = 8, 320, 4, 0.08
    mask = fastmri_mask((h, w), acc, cf, kind, seed=7)
    assert mask.shape == (h, w) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert bool((mask == mask[:1]).all()), "fastMRI masks select whole columns"
    assert bool((mask[:, centre_columns(w, cf)] == 1).all()) and mask[0, w // 2] == 1
    assert torch.equal(mask, fastmri_mask((h, w), acc, cf, kind, seed=7))
    if kind == "equispaced":
        assert mask_acceleration(mask) == pytest.approx(acc, rel=0.02)
    else:
        draws = [fastmri_mask((h, w), acc, cf, kind, seed=s) for s in range(10)]
        assert np.mean([float(m.mean()) for m in draws]) == pytest.approx(1 / acc, rel=0.1)
        assert not torch.equal(draws[0], draws[1])


def test_variable_density_masks_hit_the_acceleration_exactly():
    mask = variable_density_mask((4, 64), 4, 0.08, seed=1)
    assert int(mask[0].sum()) == 16 and bool((mask == mask[:1]).all())
    assert bool((mask[:, centre_columns(64, 0.08)] == 1).all())
    mask2 = variable_density_mask_2d((20, 24), 5, 0.15, seed=1)
    assert int(mask2.sum()) == round(20 * 24 / 5)
    assert bool((mask2[centre_columns(20, 0.15), centre_columns(24, 0.15)] == 1).all())
    # density decreases away from the centre (averaged over seeds)
    counts = sum(variable_density_mask((1, 64), 4, 0.0, seed=s)[0] for s in range(20))
    assert counts[24:40].mean() > 2 * torch.cat([counts[:8], counts[56:]]).mean()


@pytest.mark.parametrize("make", [variable_density_mask, variable_density_mask_2d, poisson_disc_mask])
def test_random_masks_are_seeded(make):
    a = make((24, 24), 4, 0.1, seed=3)
    assert torch.equal(a, make((24, 24), 4, 0.1, seed=3))
    assert not torch.equal(a, make((24, 24), 4, 0.1, seed=4))
    g = torch.Generator().manual_seed(3)
    first, second = make((24, 24), 4, 0.1, seed=g), make((24, 24), 4, 0.1, seed=g)
    assert not torch.equal(first, second), "a generator advances between draws"


def test_masks_leave_global_rng_alone():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    fastmri_mask((8, 32), 4, 0.08, "random", seed=1)
    fastmri_mask((8, 32), 4, 0.08, "equispaced", seed=torch.Generator().manual_seed(0))
    variable_density_mask((8, 32), 4, 0.08, seed=1)
    poisson_disc_mask((16, 16), 3, 0.1, seed=1)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


def test_poisson_disc_mask_properties():
    mask = poisson_disc_mask((48, 40), 5, 0.1, seed=0)
    assert mask.shape == (48, 40)
    assert mask_acceleration(mask) == pytest.approx(5, rel=0.05)
    assert bool((mask[centre_columns(48, 0.1), centre_columns(40, 0.1)] == 1).all())
    # variable density: the outer ring is sparser than the inner region
    r = torch.sqrt(((torch.arange(48) - 24) / 24.0)[:, None] ** 2 + ((torch.arange(40) - 20) / 20.0)[None] ** 2)
    assert mask[r < 0.4].mean() > 1.5 * mask[r > 0.8].mean()


def test_synthetic_coil_maps_are_normalised_smooth_and_deterministic():
    maps = synthetic_coil_maps(6, (4, 16, 16))
    assert maps.shape == (6, 4, 16, 16) and maps.dtype == torch.complex64
    torch.testing.assert_close(maps.abs().square().sum(0), torch.ones(4, 16, 16))
    assert torch.equal(maps, synthetic_coil_maps(6, (4, 16, 16)))
    assert (maps.diff(dim=-1).abs().max()) < 0.2, "sensitivities vary smoothly"
    assert not torch.allclose(maps[0].abs(), maps[1].abs()), "coils see different regions"
    assert synthetic_coil_maps(2, (8, 8), F64).dtype == torch.complex128


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fastmri_mask((8, 32), 0.5, 0.08), "acceleration"),
        (lambda: fastmri_mask((8, 32), 4, 0.5), "center_fraction"),
        (lambda: fastmri_mask((8, 32), 4, 0.08, kind="gaussian"), "kind"),
        (lambda: variable_density_mask((8,), 4, 0.08), "shape"),
        (lambda: variable_density_mask_2d((8, 8), 8, 0.9), "center_fraction"),
        (lambda: synthetic_coil_maps(0, (8, 8)), "n_coils"),
    ],
)
def test_mask_generators_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mask_generators_reject_bad_seed():
    with pytest.raises(TypeError, match="seed"):
        variable_density_mask((8, 32), 4, 0.08, seed=1.5)


# -- validation of operator inputs -------------------------------------------------------------
def test_rejects_mask_of_wrong_shape():
    with pytest.raises(ValueError, match=r"mask must have shape \(16, 16\)"):
        SingleCoilMRI(torch.ones(16, 12), img_size=(16, 16))
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 16, 16\) or \(16, 16\)"):
        SingleCoilMRI(torch.ones(3, 16, 16), img_size=(4, 16, 16))
    with pytest.raises(ValueError, match=r"mask must have shape \(16, 16\)"):
        MultiCoilMRI(torch.ones(8, 8), synthetic_coil_maps(2, (16, 16)))


@pytest.mark.parametrize(
    "mask, error, match",
    [
        (torch.full((8, 8), 0.5), ValueError, "0 and 1"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), ValueError, "NaN"),
        (torch.ones(8, 8, dtype=torch.complex64), TypeError, "real"),
        (np.ones((8, 8)), TypeError, "mask must be a torch.Tensor"),
    ],
)
def test_rejects_bad_mask_values(mask, error, match):
    with pytest.raises(error, match=match):
        SingleCoilMRI(mask)


def test_rejects_bad_coil_maps():
    with pytest.raises(ValueError, match=r"coil_maps must have shape \(coils, 16, 16\)"):
        MultiCoilMRI(torch.ones(16, 16), synthetic_coil_maps(2, (16, 12)), img_size=(16, 16))
    with pytest.raises(ValueError, match="coil_maps must have shape"):
        MultiCoilMRI(torch.ones(16, 16), synthetic_coil_maps(2, (16, 16))[0])
    with pytest.raises(TypeError, match="complex"):
        MultiCoilMRI(torch.ones(16, 16), torch.ones(2, 16, 16))
    bad = synthetic_coil_maps(2, (8, 8))
    bad[0, 0, 0] = complex(float("inf"), 0)
    with pytest.raises(ValueError, match="coil_maps contains NaN/Inf"):
        MultiCoilMRI(torch.ones(8, 8), bad)


def test_rejects_bad_dtype_argument_and_inputs():
    with pytest.raises(TypeError, match="dtype"):
        SingleCoilMRI(torch.ones(8, 8), dtype=torch.float16)
    op = MultiCoilMRI(torch.ones(8, 8), synthetic_coil_maps(2, (8, 8)))
    x = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="x must have shape"):
        op.A(x[0])
    with pytest.raises(ValueError, match="x must have shape"):
        op.A(torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(TypeError, match="float32 or float64"):
        op.A(torch.zeros(1, 2, 8, 8, dtype=torch.complex64))
    with pytest.raises(TypeError, match="dtype"):
        op.A(x.double())
    with pytest.raises(ValueError, match="y must have shape"):
        op.zero_filled(torch.zeros(1, 2, 8, 8))
