"""Structured singular bases (``invsolve.operators.spectral``): same algebra as the dense SVD, O(d) to apply."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators import Inpainting
from invsolve.operators.spectral import CoordinateBasis, DenseBasis, spectral_decomposition
from invsolve.samplers import ddrm
from invsolve.samplers.spectral_likelihood import SpectralLikelihood
from test_sampler_contract import gaussian_prior, gen


class DenseOnly(Inpainting):
    """The same operator without its structured bases: the samplers fall back to the dense ``svd()``."""

    spectral_bases = None


def operators():
    op = Inpainting.random((1, 8, 8), 0.5, gen(2))
    dense = DenseOnly(op.mask.clone(), (1, 8, 8))
    return op, dense


def test_coordinate_basis_applies_the_dense_matrices():
    op, _ = operators()
    U, S, V = spectral_decomposition(op)
    Ud, Sd, Vd = op.svd()
    assert isinstance(V, CoordinateBasis) and V.shape == tuple(Vd.shape)
    x, z = torch.randn(3, 64, generator=gen(0)), torch.randn(3, V.shape[1], generator=gen(1))
    torch.testing.assert_close(V.project(x), x @ Vd)
    torch.testing.assert_close(V.embed(z), z @ Vd.T)
    torch.testing.assert_close(U.project(x), x @ Ud)
    torch.testing.assert_close(S, Sd)


def test_dense_fallback_wraps_svd():
    _, dense = operators()
    U, S, V = spectral_decomposition(dense)
    assert isinstance(U, DenseBasis) and isinstance(V, DenseBasis)


def test_ddrm_and_likelihood_agree_across_bases():
    op, dense = operators()
    truth = torch.rand(1, 1, 8, 8, generator=gen(3))
    y = op.A(truth) + 0.05 * torch.randn(1, 1, 8, 8, generator=gen(4)) * op.mask
    prior = gaussian_prior()
    out = [ddrm(Measurement(o, GaussianNoise(0.05), y), prior, steps=6, n_samples=3, generator=gen(5)).samples
           for o in (op, dense)]
    torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-5)
    like = [SpectralLikelihood.from_measurement(Measurement(o, GaussianNoise(0.05), y), "test") for o in (op, dense)]
    x = torch.randn(4, 64, generator=gen(6))
    torch.testing.assert_close(like[0].log_likelihood(x), like[1].log_likelihood(x))


def test_coordinate_basis_rejects_bad_indices():
    with pytest.raises(ValueError, match="int64"):
        CoordinateBasis(torch.tensor([0.0, 1.0]), 4)
