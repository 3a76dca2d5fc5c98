"""Latent priors: the exact latent posterior of a linear decoder, and latent DPS against it."""

from __future__ import annotations

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators import MatrixOperator
from invsolve.priors import GaussianPrior
from invsolve.priors.latent import LatentPrior, exact_latent_posterior
from invsolve.samplers.declaration import declaration

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_latent_problem(d_z: int = 4, d_x: int = 6, m: int = 3, sigma_y: float = 0.1, seed: int = 0):
    """``z ~ N(mu, C)`` (4-d), ``x = W z + b`` (6-d), ``y = A x + n`` (3 measurements)."""
    g = gen(seed)
    root = torch.randn(d_z, d_z, generator=g, dtype=F64) / d_z**0.5
    latent = GaussianPrior(torch.randn(d_z, generator=g, dtype=F64) * 0.3, root @ root.T + 0.2 * torch.eye(d_z,
                                                                                                            dtype=F64))
    weight = torch.randn(d_x, d_z, generator=g, dtype=F64)
    bias = torch.randn(d_x, generator=g, dtype=F64) * 0.1
    prior = LatentPrior.linear(latent, weight, bias, (d_x,))
    a = torch.randn(m, d_x, generator=g, dtype=F64)
    z = latent.sample(1, g)
    meas = Measurement.simulate(MatrixOperator(a), GaussianNoise(sigma_y), prior.decode(z), g)
    return meas, prior, a


def test_the_exact_latent_posterior_is_the_closed_form():
    meas, prior, a = linear_latent_problem()
    weight, bias = prior.linear_decoder
    c, mu, s2 = prior.latent.covariance(), prior.latent.mean(), 0.1**2
    aw = a @ weight
    cov = torch.linalg.inv(torch.linalg.inv(c) + aw.T @ aw / s2)
    mean = cov @ (torch.linalg.solve(c, mu) + aw.T @ (meas.y[0] - a @ bias) / s2)
    post = exact_latent_posterior(meas, prior)
    torch.testing.assert_close(post.mean()[0], mean)
    torch.testing.assert_close(post.covariance()[0] if post.covariance().dim() == 3 else post.covariance(), cov)


def test_linear_latent_prior_round_trip_and_shapes():
    _, prior, _ = linear_latent_problem()
    z = prior.latent.sample(5, gen(3))
    torch.testing.assert_close(prior.encode(prior.decode(z)), z)  # W has full column rank
    assert prior.shape == (4,) and prior.image_shape == (6,)
    with pytest.raises(ValueError, match="weight must be"):
        LatentPrior.linear(prior.latent, torch.zeros(5, 4, dtype=F64), torch.zeros(6, dtype=F64), (6,))


def test_latent_dps_moves_the_latents_to_the_exact_posterior():
    """DPS is an approximation; with a small step budget its mean lies much nearer the exact posterior mean than
    the prior mean does, and its decoded samples have the image shape."""
    meas, prior, _ = linear_latent_problem(sigma_y=0.05)
    exact = exact_latent_posterior(meas, prior).mean()[0]
    out = declaration("latent-dps").run(meas, prior, steps=100, n_samples=2000, generator=gen(5), zeta=0.3)
    assert out.samples.shape == (2000, 1, 6) and out.diagnostics["decoder_calls"] == 101
    latent_mean = prior.encode(out.samples.reshape(2000, 6)).mean(0)
    prior_gap = float((prior.latent.mean() - exact).norm())
    assert float((latent_mean - exact).norm()) < 0.35 * prior_gap  # 0.16 measured; unguided (zeta 0): 0.99


def test_pixel_samplers_refuse_latent_priors_and_latent_samplers_plain_ones():
    meas, prior, _ = linear_latent_problem()
    with pytest.raises(ValueError, match="diffuses the latents of an autoencoder"):
        declaration("dps").run(meas, prior, steps=3, n_samples=1, generator=gen(0))
    plain = GaussianPrior(torch.zeros(6, dtype=F64), torch.eye(6, dtype=F64))
    with pytest.raises(ValueError, match="a latent prior"):
        declaration("latent-dps").run(meas, plain, steps=3, n_samples=1, generator=gen(0))


def test_the_hutchinson_trace_of_the_score_jacobian_is_unbiased_and_shrinks_as_one_over_root_probes():
    """A Gaussian latent prior has a linear score, ``J = -(C + sigma^2 I)^-1`` exactly: the estimate's mean over
    many draws is the trace within its standard error, and its spread falls as ``1 / sqrt(probes)``."""
    from invsolve.samplers.stsl import score_jacobian_trace

    _, prior, _ = linear_latent_problem()
    sigma = 0.7
    jac = -torch.linalg.inv(prior.latent.covariance() + sigma**2 * torch.eye(4, dtype=F64))
    exact = float(torch.trace(jac))
    z = prior.latent.sample(4000, gen(9))
    spreads = {}
    for probes in (1, 16):
        est = score_jacobian_trace(prior.latent.score, z, sigma, delta=1e-3, probes=probes, generator=gen(probes))
        se = float(est.std()) / len(est) ** 0.5
        assert abs(float(est.mean()) - exact) < 4 * se
        spreads[probes] = float(est.std())
    expected = (2 * float(jac.square().sum())) ** 0.5  # Gaussian probes: Var = 2 ||J||_F^2 per probe
    assert spreads[1] == pytest.approx(expected, rel=0.1)
    assert spreads[1] / spreads[16] == pytest.approx(4.0, rel=0.15)


def test_stsl_moves_the_latents_to_the_exact_posterior_and_counts_its_cost():
    meas, prior, _ = linear_latent_problem(sigma_y=0.05)
    exact = exact_latent_posterior(meas, prior).mean()[0]
    out = declaration("stsl").run(meas, prior, steps=20, n_samples=500, generator=gen(6), inner_steps=5, lr=0.1)
    latent_mean = prior.encode(out.samples.reshape(500, 6)).mean(0)
    assert float((latent_mean - exact).norm()) < 0.3 * float((prior.latent.mean() - exact).norm())  # 0.16 measured
    assert out.nfe == 20 * (5 * 2 + 1) and out.diagnostics["backward_passes"] == 100
    assert out.diagnostics["decoder_calls"] == 101 and out.diagnostics["encoder_calls"] == 1


def test_psld_moves_the_latents_to_the_exact_posterior_and_without_gluing_is_latent_dps():
    meas, prior, _ = linear_latent_problem(sigma_y=0.05)
    exact = exact_latent_posterior(meas, prior).mean()[0]
    out = declaration("psld").run(meas, prior, steps=100, n_samples=1000, generator=gen(7), zeta=0.3, gamma=0.05)
    latent_mean = prior.encode(out.samples.reshape(1000, 6)).mean(0)
    assert float((latent_mean - exact).norm()) < 0.35 * float((prior.latent.mean() - exact).norm())
    assert out.diagnostics["encoder_calls"] == 100
    plain = declaration("psld").run(meas, prior, steps=10, n_samples=3, generator=gen(8), zeta=0.3, gamma=0.0)
    dps = declaration("latent-dps").run(meas, prior, steps=10, n_samples=3, generator=gen(8), zeta=0.3)
    torch.testing.assert_close(plain.samples, dps.samples)


def test_a_local_diffusers_latent_diffusion_folder_loads_as_a_latent_prior(tmp_path):
    """A randomly initialised AutoencoderKL + latent UNet2DModel written by diffusers: the loaded prior encodes and
    decodes as diffusers does (scaling factor, [-1, 1] image range), and a latent sampler runs on it."""
    import json

    diffusers = pytest.importorskip("diffusers")
    from invsolve.operators import Inpainting
    from invsolve.priors.latent import load_diffusers_latent

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(8, 16),
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=16)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    vae.save_pretrained(tmp_path / "vae")  # safetensors
    unet.save_pretrained(tmp_path / "unet", safe_serialization=False)  # .bin, read with weights_only=True
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler"}))
    prior = load_diffusers_latent(tmp_path)
    assert prior.shape == (4, 8, 8) and prior.image_shape == (1, 16, 16)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        z = vae.config.scaling_factor * vae.encode(2 * x - 1).latent_dist.mean
        torch.testing.assert_close(prior.encode(x), z)
        torch.testing.assert_close(prior.decode(z), (vae.decode(z / vae.config.scaling_factor).sample + 1) / 2)
    op = Inpainting.random((1, 16, 16), 0.5, gen(1))
    meas = Measurement.simulate(op, GaussianNoise(0.05), x[:1], gen(2))
    out = declaration("latent-dps").run(meas, prior, steps=3, n_samples=2, generator=gen(3))
    assert out.samples.shape == (2, 1, 1, 16, 16) and torch.isfinite(out.samples).all()
    with pytest.raises(FileNotFoundError, match="vae/config.json"):
        load_diffusers_latent(tmp_path / "unet")


def _tiny_autoencoder(folder):
    """An untrained AutoencoderKL in the layout of experiments/train_autoencoder.py: 16x16 images -> 4 x 8 x 8."""
    import json

    pytest.importorskip("diffusers")
    from safetensors.torch import save_file

    from invsolve.priors.latent import AutoencoderFiles

    config = {"in_channels": 1, "out_channels": 1, "latent_channels": 4, "block_out_channels": [8, 16],
              "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
              "layers_per_block": 1, "norm_num_groups": 8, "sample_size": 16, "mid_block_add_attention": False}
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in AutoencoderKL(**config).state_dict().items()},
              str(folder / "autoencoder.safetensors"))
    (folder / "autoencoder.json").write_text(json.dumps({"config": config, "latent_std": 0.5}))
    return AutoencoderFiles(folder)


def test_a_latent_prior_trains_on_encoded_images_and_loads_with_its_autoencoder(tmp_path):
    from invsolve.priors.latent import load_latent_prior
    from invsolve.operators import Inpainting
    from invsolve.training import TrainConfig, train

    autoencoder = _tiny_autoencoder(tmp_path / "ae")
    assert autoencoder.latent_shape == (4, 8, 8) and autoencoder.image_shape == (1, 16, 16)
    config = TrainConfig(out_dir=str(tmp_path / "run"), source="brain", autoencoder=str(tmp_path / "ae"),
                         resolution=8, width=32, channel_mult=[1, 2], attn_resolutions=[], batch_size=2, steps=2,
                         checkpoint_every=2, warmup_steps=1)
    result = train(config)
    prior = load_latent_prior(result.prior, tmp_path / "ae")
    assert prior.shape == (4, 8, 8) and prior.image_shape == (1, 16, 16)
    truth = torch.rand(1, 1, 16, 16, generator=gen(0))
    meas = Measurement.simulate(Inpainting.random((1, 16, 16), 0.5, gen(1)), GaussianNoise(0.05), truth, gen(2))
    for name in ("latent-dps", "psld", "stsl"):
        out = declaration(name).run(meas, prior, steps=2, n_samples=1, generator=gen(3))
        assert out.samples.shape == (1, 1, 1, 16, 16) and torch.isfinite(out.samples).all()
    with pytest.raises(ValueError, match="latent size 8"):
        train(TrainConfig(**{**config.to_dict(), "resolution": 16, "out_dir": str(tmp_path / "bad")}))
    with pytest.raises(FileNotFoundError, match="autoencoder file"):
        load_latent_prior(result.prior, tmp_path)


def test_the_shipped_latent_brain_prior_loads_offline_and_reconstructs_held_out_brains():
    """The shipped latent prior: weights read with weights_only / safetensors, at most ~20 MB together, its
    autoencoder's ceiling on held-out brains as its recipe records, and a latent sampler runs on it."""
    import json
    from pathlib import Path

    pytest.importorskip("diffusers")
    from invsolve.datasets.brain import BrainSlices
    from invsolve.metrics import psnr
    from invsolve.priors.default import load_shipped_prior, shipped_prior_path

    path = shipped_prior_path("latent_brain")
    autoencoder = Path(path).parent / "brain_autoencoder.safetensors"
    assert path.stat().st_size + autoencoder.stat().st_size < 20e6
    assert torch.load(path, weights_only=True)["format"] == "invsolve-edm-prior"
    recipe = json.loads(autoencoder.with_suffix(".json").read_text())
    prior = load_shipped_prior("latent_brain")
    assert prior.shape == (4, 16, 16) and prior.image_shape == (1, 64, 64)
    stream = BrainSlices(64, split="heldout", seed=0)
    images = torch.stack([stream[i] for i in range(4)])
    with torch.no_grad():
        ceiling = [psnr(images[i, 0], prior.decode(prior.encode(images[i:i + 1]))[0, 0].clamp(0, 1)) for i in range(4)]
    assert sum(ceiling) / 4 > recipe["heldout_psnr"] - 2.0  # recorded on 32 held-out slices
