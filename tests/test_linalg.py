"""Dense matrices and SVDs of operators; composition rules."""

import pytest
import torch

from invsolve.operators import (
    Blur,
    Inpainting,
    LinearComposition,
    MatrixOperator,
    ParallelBeamCT,
    RealToComplex,
    SingleCoilMRI,
    compose,
    dense_matrix,
    dense_svd,
    fastmri_mask,
)


def _ct():
    return ParallelBeamCT(torch.linspace(0, 3.0, 6), 12, dtype=torch.float64)


def _mri_real():
    mask = fastmri_mask((12, 12), 4, center_fraction=0.2, kind="equispaced", seed=0)
    return SingleCoilMRI(mask, dtype=torch.float64) @ RealToComplex((1, 12, 12), dtype=torch.float64)


def _blur():
    return Blur.gaussian((1, 10, 10), sigma=1.0, dtype=torch.float64)


@pytest.mark.parametrize("build", [_ct, _mri_real, _blur], ids=["ct", "mri-real", "blur"])
def test_dense_matrix_reproduces_the_operator(build):
    op = build()
    A = dense_matrix(op)
    x = torch.randn(3, *op.x_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.reshape(3, -1) @ A.T, op.A(x).reshape(3, -1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("build", [_ct, _mri_real, _blur], ids=["ct", "mri-real", "blur"])
def test_dense_svd_matches_lapack(build):
    op = build()
    U, S, V = op.svd()
    A = dense_matrix(op)
    reference = torch.linalg.svdvals(A)
    assert S.numel() == int((reference > 1e-4 * reference.max()).sum())
    torch.testing.assert_close(S, reference[: S.numel()], rtol=1e-8, atol=1e-8)
    dropped = float(reference[S.numel():].max()) if reference.numel() > S.numel() else 0.0
    torch.testing.assert_close(U @ torch.diag(S) @ V.T, A, rtol=0, atol=1e-9 + 2 * dropped)
    eye = torch.eye(S.numel(), dtype=torch.float64)
    torch.testing.assert_close(U.T @ U, eye, rtol=0, atol=1e-7)
    torch.testing.assert_close(V.T @ V, eye, rtol=0, atol=1e-7)


def test_inpainting_svd_is_the_observed_selection():
    op = Inpainting.random((1, 6, 6), 0.5, torch.Generator().manual_seed(0), dtype=torch.float64)
    U, S, V = op.svd()
    assert S.numel() == 18 and torch.all(S == 1)
    torch.testing.assert_close(U @ torch.diag(S) @ V.T, dense_matrix(op))


def test_mri_of_real_image_singular_values():
    # A^T A = F^H diag((m[k] + m[-k]) / 2) F: singular values are 1 or sqrt(1/2) (or 0).
    _, S, _ = _mri_real().svd()
    assert torch.all(torch.isclose(S, torch.tensor(1.0, dtype=S.dtype)) | torch.isclose(S, torch.tensor(0.5, dtype=S.dtype).sqrt()))


def test_dense_svd_refuses_large_operators():
    op = RealToComplex((1, 200, 200))
    with pytest.raises(ValueError, match="too large for a dense SVD"):
        dense_svd(op, max_size=1000)


def test_compose_checks_shapes_and_picks_the_linear_class():
    ct = _ct()
    with pytest.raises(ValueError, match="cannot compose"):
        compose(ct, RealToComplex((1, 12, 12), dtype=torch.float64))
    assert isinstance(RealToComplex(ct.y_shape, dtype=torch.float64) @ ct, LinearComposition)
    with pytest.raises(TypeError, match="dtypes"):
        compose(RealToComplex(ct.y_shape, dtype=torch.float32), ct)
    with pytest.raises(TypeError, match="Operator"):
        compose(ct, torch.nn.Identity())


def test_real_to_complex_rejects_bad_shapes():
    with pytest.raises(ValueError, match="x_shape"):
        RealToComplex((2, 4, 4))


def test_matrix_operator_keeps_its_own_svd():
    A = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    U, S, V = MatrixOperator(A).svd()
    torch.testing.assert_close(U @ torch.diag(S) @ V.T, A)


def test_default_svd_is_memoised_until_the_operator_changes():
    from invsolve.operators import RealToComplex, SingleCoilMRI
    import invsolve.operators.linalg as linalg

    mask = torch.zeros(8, 8)
    mask[:, ::2] = 1
    op = SingleCoilMRI(mask) @ RealToComplex((1, 8, 8))
    calls = []
    original = linalg.dense_svd

    def counting(operator, **kw):
        calls.append(1)
        return original(operator, **kw)

    linalg.dense_svd = counting
    try:
        first = op.svd()
        assert op.svd() is first and len(calls) == 1
        next(iter(op.buffers())).mul_(1.0)  # in-place change of a buffer invalidates the memo
        op.svd()
        assert len(calls) == 2
    finally:
        linalg.dense_svd = original
