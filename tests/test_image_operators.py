"""Behaviour of the image-domain operators beyond the shared contract (tests/test_operator_contract.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

from invsolve.operators import Blur, Inpainting, SuperResolution, gaussian_kernel, motion_kernel


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(shape, generator=gen(seed), dtype=dtype)


# -- inpainting ---------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.5, 1.0])
def test_inpainting_random_observes_the_requested_fraction(fraction):
    op = Inpainting.random((3, 20, 20), fraction, gen())
    assert op.mask.shape == (1, 20, 20)
    assert int(op.mask.sum()) == round(fraction * 400)
    assert op.fraction_observed == pytest.approx(round(fraction * 400) / 400)
    y = op.A(torch.ones(2, 3, 20, 20))
    assert torch.equal(y, op.mask.expand(2, 3, 20, 20))  # every channel of a pixel shares the mask


def test_inpainting_random_channelwise():
    op = Inpainting.random((3, 10, 10), 0.25, gen(), pixelwise=False)
    assert op.mask.shape == (3, 10, 10)
    assert int(op.mask.sum()) == 75


def test_inpainting_random_is_seeded():
    a = Inpainting.random((1, 16, 16), 0.3, gen(7)).mask
    b = Inpainting.random((1, 16, 16), 0.3, gen(7)).mask
    c = Inpainting.random((1, 16, 16), 0.3, gen(8)).mask
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_inpainting_box_places_the_hole():
    op = Inpainting.box((2, 12, 16), top=3, left=5, height=4, width=6, dtype=torch.float64)
    expected = torch.ones(1, 12, 16, dtype=torch.float64)
    expected[:, 3:7, 5:11] = 0
    assert torch.equal(op.mask, expected)
    y = op.A(torch.ones(1, 2, 12, 16, dtype=torch.float64))
    assert float(y[..., 3:7, 5:11].abs().sum()) == 0
    assert float(y.sum()) == 2 * (12 * 16 - 24)


def test_inpainting_user_mask_2d_bool_and_pseudo_inverse():
    mask = torch.rand(8, 8, generator=gen()) > 0.5
    op = Inpainting(mask, (3, 8, 8), dtype=torch.float64)
    x = randn(2, 3, 8, 8)
    y = op.A(x)
    torch.testing.assert_close(y, x * mask.double())
    torch.testing.assert_close(op.pseudo_inverse(y), y)
    torch.testing.assert_close(op.pseudo_inverse(y, damping=0.5), y / 1.5)
    assert Inpainting(mask).x_shape == (1, 8, 8)


def test_inpainting_rejects_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"mask must have shape \(8, 8\), \(1, 8, 8\) or \(3, 8, 8\)"):
        Inpainting(torch.ones(2, 8, 8), (3, 8, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        Inpainting(torch.ones(8, 9), (3, 8, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        Inpainting(torch.ones(1, 1, 8, 8))


def test_inpainting_rejects_non_binary_or_non_finite_mask():
    with pytest.raises(ValueError, match="mask must be binary"):
        Inpainting(torch.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="mask contains NaN"):
        Inpainting(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_inpainting_rejects_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match="fraction_observed"):
        Inpainting.random((1, 8, 8), fraction, gen())


def test_inpainting_random_needs_an_explicit_generator():
    with pytest.raises(TypeError, match="generator"):
        Inpainting.random((1, 8, 8), 0.5, 0)


def test_inpainting_box_must_fit():
    with pytest.raises(ValueError, match="does not fit"):
        Inpainting.box((1, 8, 8), top=5, left=0, height=4, width=2)


# -- super-resolution ---------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("filter", ["bicubic", "bilinear", None])
def test_super_resolution_shape_and_constant_image(factor, filter):
    op = SuperResolution((2, 24, 32), factor, filter, dtype=torch.float64)
    assert op.y_shape == (2, 24 // factor, 32 // factor)
    y = op.A(torch.full((1, 2, 24, 32), 3.0, dtype=torch.float64))
    torch.testing.assert_close(y, torch.full_like(y, 3.0))  # normalised filter, circular padding


def test_super_resolution_without_filter_is_plain_decimation():
    op = SuperResolution((1, 16, 16), 4, None, dtype=torch.float64)
    x = randn(2, 1, 16, 16)
    torch.testing.assert_close(op.A(x), x[..., ::4, ::4])
    with pytest.raises(TypeError, match="dtype"):  # dtype known even without a filter buffer
        op.A(x.float())


@pytest.mark.parametrize("padding", ["circular", "reflect", "replicate", "constant"])
def test_super_resolution_adjoint_for_every_padding(padding):
    op = SuperResolution((1, 16, 16), 2, "bicubic", padding=padding, dtype=torch.float64)
    x, y = randn(1, 1, 16, 16), randn(1, 1, 8, 8, seed=1)
    lhs, rhs = (op.A(x) * y).sum(), (x * op.A_adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-12 * abs(float(lhs))


def test_super_resolution_rejects_factor_not_dividing_the_size():
    with pytest.raises(ValueError, match="divisible by factor=4"):
        SuperResolution((1, 30, 32), 4)
    with pytest.raises(ValueError, match="factor must be >= 2"):
        SuperResolution((1, 30, 32), 1)
    with pytest.raises(ValueError, match="larger than the image"):
        SuperResolution((1, 16, 16), 4, "gaussian")  # 29 x 29 kernel
    with pytest.raises(ValueError, match="filter must be one of"):
        SuperResolution((1, 16, 16), 2, "lanczos")


# -- blur kernels ---------------------------------------------------------------------


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel(1.0, dtype=torch.float64)  # default size 2 * int(1 / 0.3 + 1) + 1 = 9
    assert k.shape == (9, 9) and k.dtype == torch.float64
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-14)
    torch.testing.assert_close(k, k.flip(0))
    torch.testing.assert_close(k, k.T)
    assert int(k.argmax()) == 4 * 9 + 4
    assert gaussian_kernel((1.0, 2.0), (5, 7)).shape == (5, 7)


def test_motion_kernel_is_seeded_and_normalised():
    global_state = torch.random.get_rng_state()
    a = motion_kernel(9, gen(5), dtype=torch.float64)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # only the explicit generator is used
    b = motion_kernel(9, gen(5), dtype=torch.float64)
    c = motion_kernel(9, gen(6), dtype=torch.float64)
    assert a.shape == (9, 9)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.sum()) == pytest.approx(1.0, abs=1e-14)
    assert float(a.min()) >= 0
    with pytest.raises(TypeError, match="generator"):
        motion_kernel(9, None)


# -- blur operator ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "motion"])
def test_fft_blur_keeps_a_constant_image_constant(kind):
    if kind == "gaussian":
        op = Blur.gaussian((3, 16, 16), 1.5, "fft", dtype=torch.float64)
    else:
        op = Blur.motion((3, 16, 16), 7, gen(2), "fft", dtype=torch.float64)
    assert float(op.kernel.sum(dim=(-2, -1)).max()) == pytest.approx(1.0, abs=1e-12)
    y = op.A(torch.full((2, 3, 16, 16), 2.0, dtype=torch.float64))
    torch.testing.assert_close(y, torch.full_like(y, 2.0))


@pytest.mark.parametrize("padding", ["circular", "reflect", "replicate", "constant", "valid"])
@pytest.mark.parametrize("ksize", [(5, 5), (4, 6)])
def test_fft_and_spatial_blur_agree_away_from_the_boundary(padding, ksize):
    kernel = torch.rand(ksize, generator=gen(1), dtype=torch.float64)
    fft = Blur((2, 20, 24), kernel, "fft")
    spatial = Blur((2, 20, 24), kernel, "spatial", padding)
    x = randn(2, 2, 20, 24)
    a, b = fft.A(x), spatial.A(x)
    h, w = ksize
    if padding == "circular":
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        return
    top, left = h // 2 - (h - 1) % 2, w // 2 - (w - 1) % 2  # deepinv's kernel centre
    interior = (..., slice(h - 1, 20 - h + 1), slice(w - 1, 24 - w + 1))
    if padding == "valid":
        assert b.shape == (2, 2, 20 - h + 1, 24 - w + 1)
        full = torch.zeros_like(a)  # 'valid' output row i is full-size output row i + top
        full[..., top : top + 20 - h + 1, left : left + 24 - w + 1] = b
        b = full
    torch.testing.assert_close(a[interior], b[interior], rtol=0, atol=1e-12)


def test_fft_blur_survives_dtype_conversion():
    op32 = Blur.gaussian((1, 16, 16), 1.0, "fft")
    op64 = Blur.gaussian((1, 16, 16), 1.0, "fft", dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        converted = op32.to(torch.float64)
    x = randn(1, 1, 16, 16)
    torch.testing.assert_close(converted.A(x), op64.A(x), rtol=0, atol=1e-6)
    assert converted.physics.angle.is_complex()


def test_fft_blur_pseudo_inverse_solves_the_normal_equations():
    op = Blur.gaussian((1, 16, 16), 1.0, "fft", dtype=torch.float64)
    y = randn(2, 1, 16, 16)
    x = op.pseudo_inverse(y, damping=0.05)
    torch.testing.assert_close(op.A_adjoint(op.A(x)) + 0.05 * x, op.A_adjoint(y), rtol=0, atol=1e-10)


def test_blur_channel_kernels_and_valid_shape():
    kernel = torch.stack([gaussian_kernel(s, 5, dtype=torch.float64) for s in (0.5, 1.0, 2.0)])[None]
    op = Blur((3, 12, 12), kernel, "spatial", "valid")
    assert op.y_shape == (3, 8, 8)
    assert op.dtype == torch.float64


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "kernel contains NaN/Inf"),
        (torch.ones(1, 3, 3), "kernel must be 2-D"),
        (torch.ones(1, 2, 3, 3), "kernel must be 2-D"),
        (torch.ones(17, 3), r"larger than the image \(16, 16\)"),
        (-torch.ones(3, 3), "positive sum"),
    ],
)
def test_blur_rejects_bad_kernels(kernel, match):
    with pytest.raises(ValueError, match=match):
        Blur((3, 16, 16), kernel)


def test_blur_rejects_bad_method_and_padding():
    k = gaussian_kernel(1.0, 5)
    with pytest.raises(ValueError, match="padding must be 'circular'"):
        Blur((1, 16, 16), k, "fft", "reflect")
    with pytest.raises(ValueError, match="method must be one of"):
        Blur((1, 16, 16), k, "conv")
    with pytest.raises(ValueError, match="padding must be one of"):
        Blur((1, 16, 16), k, "spatial", "mirror")
    with pytest.raises(TypeError, match="kernel must be a torch.Tensor"):
        Blur((1, 16, 16), [[1.0]])
