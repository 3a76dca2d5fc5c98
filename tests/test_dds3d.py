"""DDS (the fast path of 3D reconstruction): its data consistency is DiffusionMBIR's, it is deterministic given a
generator, and the network never sees more than ``chunk`` slices at once (memory flat in depth)."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators import RealToComplex, SingleCoilMRI, fastmri_mask
from invsolve.priors import GaussianPrior
from invsolve.priors.base import Prior
from invsolve.priors.slice_stack import SliceStackPrior
from invsolve.samplers import declaration, dds3d, mbir3d
from invsolve.samplers.declaration import Need
from invsolve.samplers.mbir3d import admm_tv_step

H, W = 8, 8


def _prior2d() -> GaussianPrior:
    return GaussianPrior(torch.full((1, H, W), 0.5), 0.05, sigma_max=20.0)


def _problem(depth: int = 6):
    mask = fastmri_mask((H, W), 2, 0.25, seed=0)
    op = SingleCoilMRI(mask, (depth, H, W)) @ RealToComplex((1, depth, H, W))
    g = torch.Generator().manual_seed(0)
    truth = 0.5 + 0.2 * torch.rand(1, 1, 1, H, W, generator=g).expand(1, 1, depth, H, W)
    return Measurement.simulate(op, GaussianNoise(0.01), truth.contiguous(), torch.Generator().manual_seed(1))


class _ConstantDenoiser(Prior):
    """A 2D "prior" whose denoiser returns one fixed image, recording the batch of every call."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image, self.shape, self.batches = image, tuple(image.shape), []
        self.sigma_min, self.sigma_max = 0.002, 20.0

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.image.to(x.dtype).expand_as(x).clone()


def test_dds3d_is_the_denoised_mode_with_the_network_noise_and_is_deterministic():
    meas = _problem()
    prior = SliceStackPrior(_prior2d(), 6, chunk=4)
    settings = {"steps": 12, "n_samples": 2, "lam": 0.3, "admm_rho": 1.0}
    runs = [dds3d(meas, prior, generator=torch.Generator().manual_seed(3), **settings) for _ in range(2)]
    torch.testing.assert_close(runs[0].samples, runs[1].samples, rtol=0, atol=0)
    same = mbir3d(meas, prior, generator=torch.Generator().manual_seed(3), eta=0.85, consistency="denoised",
                  epsilon="network", **settings)
    torch.testing.assert_close(runs[0].samples, same.samples, rtol=0, atol=0)
    other = mbir3d(meas, prior, generator=torch.Generator().manual_seed(3), eta=0.85, consistency="denoised",
                   **settings)
    assert not torch.allclose(runs[0].samples, other.samples)  # the noise direction is a real choice
    assert runs[0].nfe == 12
    chunked = dds3d(meas, SliceStackPrior(_prior2d(), 6, chunk=1), generator=torch.Generator().manual_seed(3),
                    **settings)
    torch.testing.assert_close(chunked.samples, runs[0].samples)
    with pytest.raises(ValueError, match="epsilon must be"):
        mbir3d(meas, prior, steps=2, generator=torch.Generator(), epsilon="both")


def test_dds3d_one_step_is_diffusion_mbir_data_consistency_on_the_denoised_image():
    """With one step the DDIM update returns the data-consistent estimate: exactly ``admm_tv_step`` of x0."""
    meas = _problem()
    image = 0.3 + 0.4 * torch.rand(1, H, W, generator=torch.Generator().manual_seed(5))
    prior = SliceStackPrior(_ConstantDenoiser(image), 6, chunk=6)
    out = dds3d(meas, prior, steps=1, generator=torch.Generator().manual_seed(0), lam=0.2, lam_xy=0.1,
                admm_rho=1.0, operator_norm=1.0, cg_iterations=7, admm_iterations=3)
    x = image.expand(1, 1, 6, H, W).clone()
    z = u = torch.zeros(3, *x.shape)
    for _ in range(3):
        x, z, u = admm_tv_step(x, z, u, meas.operator, meas.y, weights={-3: 0.2, -2: 0.1, -1: 0.1}, admm_rho=1.0,
                               cg_iterations=7)
    torch.testing.assert_close(out.samples[0], x)


def test_dds3d_fits_the_data_as_well_as_diffusion_mbir():
    meas = _problem()
    prior = SliceStackPrior(_prior2d(), 6, chunk=6)
    noise_norm = 0.01 * meas.y.numel() ** 0.5
    fits = {}
    for name, sampler in (("dds3d", dds3d), ("mbir3d", mbir3d)):
        out = sampler(meas, prior, steps=30, generator=torch.Generator().manual_seed(0), lam=0.0, admm_rho=1.0,
                      cg_iterations=20)
        fits[name] = float((meas.operator.A(out.samples[0]) - meas.y).norm())
    assert fits["dds3d"] < 2 * noise_norm and fits["mbir3d"] < 2 * noise_norm, (fits, noise_norm)


@pytest.mark.parametrize("depth", [4, 24])
def test_dds3d_network_batches_never_exceed_chunk(depth):
    """Memory flat in depth: every network call sees at most ``chunk`` slices, whatever the volume's depth."""
    meas = _problem(depth)
    denoiser = _ConstantDenoiser(torch.full((1, H, W), 0.5))
    dds3d(meas, SliceStackPrior(denoiser, depth, chunk=5), steps=3, generator=torch.Generator().manual_seed(0))
    assert max(denoiser.batches) == min(5, depth)
    assert sum(denoiser.batches) == 3 * depth


def test_dds3d_is_declared_for_volumes():
    found = declaration("dds3d")
    assert found.needs >= {Need.VOLUME, Need.LINEAR} and found.default_steps == 50
    assert set(found.ranges) >= {"lam", "lam_xy", "cg_iterations", "admm_iterations", "eta", "chunk"}
