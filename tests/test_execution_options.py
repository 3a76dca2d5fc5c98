"""Execution options of a prior's network change its precision, never what is computed around it."""

import pytest
import torch

from invsolve.priors.edm import make_edm_prior
from invsolve.priors.execution import ExecutionOptions

CONFIG = {"arch": "adm", "channels": 1, "resolution": 16, "width": 32, "channel_mult": [1, 2], "num_blocks": 1,
          "attn_resolutions": [8], "sigma_data": 0.5}


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 1, 16, 16, generator=g), torch.tensor([0.05, 0.5, 5.0])


@pytest.fixture(scope="module")
def prior():
    return make_edm_prior(CONFIG, seed=1)


def test_channels_last_gives_the_same_denoiser(prior):
    x, s = _inputs()
    plain = prior.with_execution(channels_last=False)
    fast = make_edm_prior(CONFIG, seed=1).with_execution(channels_last=True)
    with torch.no_grad():
        a, b = plain.denoise(x, s), fast.denoise(x, s)
    assert b.is_contiguous() and b.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bfloat16_changes_only_precision_and_keeps_dtype_and_gradients(prior):
    x, s = _inputs()
    bf16 = prior.with_execution(precision="bfloat16")
    assert bf16.denoiser.net is prior.denoiser.net  # weights shared, not copied
    with torch.no_grad():
        exact, reduced = prior.denoise(x, s), bf16.denoise(x, s)
        exact64 = prior.denoise(x.double(), s.double())
        reduced64 = bf16.denoise(x.double(), s.double())
    assert reduced.dtype == torch.float32 and reduced64.dtype == torch.float64
    scale = exact.abs().max()
    err = (reduced - exact).abs().max() / scale
    assert 0 < err < 0.05  # bf16 has an 8-bit mantissa: differs, but only at its precision
    assert (reduced64 - exact64).abs().max() / scale < 0.05
    # the skip path stays exact: at tiny sigma c_skip ~ 1 dominates
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(bf16.denoise(xg, s).square().sum(), xg)
    xe = x.clone().requires_grad_(True)
    (ge,) = torch.autograd.grad(prior.denoise(xe, s).square().sum(), xe)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    assert (g - ge).norm() / ge.norm() < 0.05


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="precision"):
        ExecutionOptions(precision="int8")
    with pytest.raises(TypeError, match="compile"):
        ExecutionOptions(compile="yes")
