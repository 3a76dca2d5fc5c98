"""Coil sensitivity estimation from the ACS region (operators/coil_sensitivity.py).

Setting of every accuracy test: 64 x 64 random-ellipse phantoms with a smooth phase, the 8
synthetic coil maps of ``synthetic_coil_maps`` and fastMRI's equispaced 4x mask with centre
fraction 0.08 (5 calibration columns). Measured over phantom seeds 0-5 (with and without the
phase), "lowres" + Hann: per-coil magnitude correlation (Pearson, inside the object) 0.983-0.996
(bar 0.97); magnitude of the coil-combined image vs RSS 0.3-1.5 % (bar 4 %); complex
coil-combined image vs RSS 8-12 %, almost all of it a small imaginary part from the blur of the
5-line estimate (bar 20 %; it falls to ~1.5 % with 22 calibration lines at 256 x 256). The test
phantom (seed 3, with phase): correlation 0.991-0.998, |combined| 1.4 %, complex 11.4 %,
least-squares magnitude with estimated vs true maps 1.4 %.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from invsolve.operators import (
    MultiCoilMRI,
    RealToComplex,
    calibration_region,
    estimate_coil_maps,
    fastmri_mask,
    synthetic_coil_maps,
)
from invsolve.datasets.phantoms import random_ellipses

N, COILS = 64, 8


def fft2c(x):
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(k):
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


@pytest.fixture(scope="module")
def problem():
    """(object magnitude, complex object, true maps, fully sampled k-space, 4x mask) in complex128."""
    x = random_ellipses(N, torch.Generator().manual_seed(3), dtype=torch.float64)[0]
    yy, xx = torch.meshgrid(*(torch.linspace(-1, 1, N, dtype=torch.float64),) * 2, indexing="ij")
    z = x * torch.exp(1j * (0.8 * xx - 0.5 * yy + 0.6 * xx * yy))  # smooth object phase
    maps = synthetic_coil_maps(COILS, (N, N), torch.complex128)
    mask = fastmri_mask((N, N), 4, 0.08, "equispaced", seed=0, dtype=torch.float64)
    return x, z, maps, fft2c(maps * z), mask


def test_calibration_region_of_a_fastmri_mask(problem):
    mask = problem[4]
    cal = calibration_region(mask)
    assert cal == slice(30, 35) == calibration_region(mask[0].numpy())
    assert bool(mask[0, cal].all()) and not bool(mask[0, cal.start - 1]) and not bool(mask[0, cal.stop])


def test_calibration_region_errors():
    cols = torch.zeros(32)
    cols[14:20] = 1
    assert calibration_region(cols) == slice(14, 20)
    cols[16] = 0
    with pytest.raises(ValueError, match="mask_columns does not sample the centre column 16"):
        calibration_region(cols)
    cols[16], cols[14:16] = 1, 0
    with pytest.raises(ValueError, match="mask_columns has only 4"):
        calibration_region(cols, min_width=5)
    with pytest.raises(ValueError, match="identical rows"):
        calibration_region(torch.eye(8))
    with pytest.raises(ValueError, match="0 and 1"):
        calibration_region(torch.full((8,), 0.5))


def _inside(x):
    return x > 0.05


def test_maps_match_the_true_maps_and_are_normalised(problem):
    x, _, maps, kspace, mask = problem
    est = estimate_coil_maps(kspace * mask, calibration_region(mask))
    assert est.shape == maps.shape and est.dtype == torch.complex128
    inside = _inside(x)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(maps.abs()[:, inside].numpy(), est.abs()[:, inside].numpy())]
    assert min(corr) > 0.97, corr
    norm = est.abs().square().sum(0)
    support = norm > 0
    assert bool(support[inside].all()) and not bool(support[0, 0])  # object inside, corner background outside
    torch.testing.assert_close(norm[support], torch.ones_like(norm[support]))


def test_coil_combination_is_approximately_the_rss_magnitude(problem):
    x, z, maps, kspace, mask = problem
    est = estimate_coil_maps(kspace * mask, calibration_region(mask))
    coil = ifft2c(kspace)
    rss = coil.abs().square().sum(0).sqrt()
    combined = (est.conj() * coil).sum(0)
    inside = _inside(x)

    def rel(a):
        return float((a - rss)[inside].norm() / rss[inside].norm())

    assert rel(combined.abs()) < 0.04
    assert rel(combined) < 0.20  # complex: the maps absorbed the object's phase
    assert rel((maps.conj() * coil).sum(0)) > 0.3  # the true maps keep the phase (measured 0.36)


def test_reconstruction_with_estimated_maps_matches_true_maps(problem):
    x, z, maps, kspace, mask = problem
    est = estimate_coil_maps(kspace * mask, 5)  # an int: fastMRI's central block
    y = torch.view_as_real(kspace).permute(3, 0, 1, 2)[None].contiguous()  # (1, 2, C, H, W), fully sampled
    full = torch.ones(N, N, dtype=torch.float64)
    recon = {}
    for name, m in (("true", maps), ("est", est)):
        op = MultiCoilMRI(full, m, dtype=torch.float64)
        out = op.pseudo_inverse(y, max_iter=50, tol=1e-8)[0]
        recon[name] = out.square().sum(0).sqrt()
    inside = _inside(x)
    err = float((recon["est"] - recon["true"])[inside].norm() / recon["true"][inside].norm())
    assert err < 0.04
    torch.testing.assert_close(recon["true"], z.abs(), atol=1e-6, rtol=1e-6)
    # A real magnitude model through RealToComplex: the estimated maps carry the object's phase, so
    # the real least-squares image is the magnitude (measured 2.3 %); with the true maps it is not (9.6 %).
    mag_err = {}
    for name, m in (("true", maps), ("est", est)):
        real_op = MultiCoilMRI(full, m, dtype=torch.float64) @ RealToComplex((1, N, N), dtype=torch.float64)
        mag = real_op.pseudo_inverse(y, max_iter=50, tol=1e-8)[0, 0]
        mag_err[name] = float((mag - z.abs())[inside].norm() / z.abs()[inside].norm())
    assert mag_err["est"] < 0.04 and mag_err["true"] > 2 * mag_err["est"]


def test_inputs_numpy_rect_window_and_complex64(problem):
    _, _, _, kspace, mask = problem
    k64 = (kspace * mask).to(torch.complex64)
    a = estimate_coil_maps(k64.numpy(), slice(30, 35), window="rect")
    b = estimate_coil_maps(k64, 5, window="rect")
    assert a.dtype == torch.complex64 and torch.equal(a, b)


def test_argument_errors(problem):
    kspace = problem[3]
    with pytest.raises(TypeError, match="complex"):
        estimate_coil_maps(kspace.real, 5)
    with pytest.raises(ValueError, match="coils, H, W"):
        estimate_coil_maps(kspace[0], 5)
    with pytest.raises(ValueError, match="calibration"):
        estimate_coil_maps(kspace, slice(0, 8))  # centre column 32 not in the block
    with pytest.raises(ValueError, match="calibration"):
        estimate_coil_maps(kspace, slice(32, 40))  # no column left of the centre
    with pytest.raises(ValueError, match="calibration"):
        estimate_coil_maps(kspace, 2)
    with pytest.raises(ValueError, match="method"):
        estimate_coil_maps(kspace, 5, method="walsh")
    with pytest.raises(ValueError, match="window"):
        estimate_coil_maps(kspace, 5, window="kaiser")
    with pytest.raises(ValueError, match="threshold"):
        estimate_coil_maps(kspace, 5, threshold=1.0)


def test_espirit_missing_sigpy_is_a_clear_import_error(problem):
    if importlib.util.find_spec("sigpy") is not None:
        pytest.skip("sigpy is installed")
    with pytest.raises(ImportError, match=r"invsolve\[espirit\]"):
        estimate_coil_maps(problem[3], 5, method="espirit")


def test_espirit_maps_match_the_true_maps(problem):
    """sigpy calibrates on a centred square, so ESPIRiT gets a wide ACS here (24 columns; measured 0.9999)."""
    pytest.importorskip("sigpy")
    x, _, maps, kspace, _ = problem
    est = estimate_coil_maps(kspace, 24, method="espirit")
    assert est.shape == maps.shape and est.dtype == torch.complex128
    inside = _inside(x)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(maps.abs()[:, inside].numpy(), est.abs()[:, inside].numpy())]
    assert min(corr) > 0.99, corr
