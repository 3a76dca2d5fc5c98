"""EDM preconditioning around deepinv networks: formulas, no double preconditioning, files, gradients."""

from __future__ import annotations

import pytest
import torch

from invsolve.priors.edm import (
    EDMDenoiser,
    EDMPrior,
    build_network,
    edm_loss_weight,
    edm_preconditioning,
    make_edm_prior,
    network_config,
)

TINY = dict(resolution=16, width=32, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,))


def tiny_prior(arch: str = "adm", channels: int = 1, sigma_data: float = 0.5, seed: int = 0) -> EDMPrior:
    return make_edm_prior(dict(arch=arch, channels=channels, sigma_data=sigma_data, **TINY), seed=seed)


def randomize_(module: torch.nn.Module, seed: int = 1) -> None:
    """deepinv zero-initializes output layers; give every parameter a nonzero random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_preconditioning_matches_table_1():
    sigma = torch.tensor([0.01, 0.3, 5.0], dtype=torch.float64)
    sd = 0.4
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sd)
    torch.testing.assert_close(c_skip, sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    # Effective training target has unit variance: lambda * c_out^2 = 1 (Karras et al., eq. 8 and App. B.6).
    torch.testing.assert_close(edm_loss_weight(sigma, sd) * c_out**2, torch.ones_like(sigma))


def test_zero_network_is_the_exact_gaussian_denoiser():
    """For x0 ~ N(0, sigma_data^2 I), E[x0 | x] = c_skip x: the preconditioned net with F = 0 is exact."""

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, c_noise):
            return self.w * x

    sd = 0.7
    den = EDMDenoiser(Zero(), sigma_data=sd)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    expected = sd**2 / (sd**2 + sigma**2).reshape(-1, 1, 1, 1) * x
    torch.testing.assert_close(den(x, sigma), expected)


@pytest.mark.parametrize("arch", ["adm", "ncsnpp", "ddpmpp"])
def test_no_double_preconditioning_matches_deepinv_forward(arch):
    """With sigma_data = deepinv's pixel_std, our D equals deepinv's own preconditioned forward."""
    net = build_network(arch, 1, **TINY, seed=3)
    randomize_(net)
    net.pixel_std = 0.5
    ours = EDMDenoiser(net, sigma_data=0.5).eval()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.2, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, sigma), net(x, sigma), rtol=1e-5, atol=1e-5)


def test_build_network_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_network("ncsnpp", 2, **TINY, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_network("ncsnpp", 2, **TINY, seed=7)
    c = build_network("ncsnpp", 2, **TINY, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="unet"), "arch"),
        (dict(width=48), "width"),
        (dict(resolution=18, channel_mult=(1, 2, 2)), "resolution"),
        (dict(channels=0), "channels"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_network_config_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        network_config(**kwargs)


@pytest.mark.parametrize("channels", [1, 2])
def test_prior_interface_score_and_gradients(channels):
    prior = tiny_prior(channels=channels)
    randomize_(prior.denoiser.net)
    assert prior.shape == (channels, 16, 16)
    x = torch.randn(2, channels, 16, 16, requires_grad=True)
    d = prior.denoise(x, 0.5)
    assert d.shape == x.shape and torch.isfinite(d).all()
    torch.testing.assert_close(prior.score(x, 0.5), (d - x) / 0.25)
    d.sum().backward()  # guidance methods differentiate through the denoiser
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="shape"):
        prior.denoise(torch.zeros(2, channels, 8, 8), 0.5)


def test_float64_input_keeps_its_dtype():
    prior = tiny_prior()
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    assert prior.denoise(x, torch.tensor([0.3], dtype=torch.float64)).dtype == torch.float64


def test_save_and_from_checkpoint_roundtrip(tmp_path):
    prior = tiny_prior(arch="ncsnpp", channels=2, sigma_data=0.3)
    randomize_(prior.denoiser.net)
    path = prior.save(tmp_path / "p.pt")
    state = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert state["format"] == "invsolve-edm-prior"
    loaded = EDMPrior.from_checkpoint(path)
    assert loaded.shape == prior.shape and loaded.sigma_data == 0.3
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoise(x, 0.7), prior.denoise(x, 0.7), rtol=0, atol=0)


def test_from_checkpoint_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        EDMPrior.from_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        EDMPrior.from_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*format"):
        EDMPrior.from_checkpoint(foreign)
    bad_weights = tmp_path / "bad.pt"
    state = tiny_prior().state()
    state["state_dict"] = {k: v for k, v in list(state["state_dict"].items())[1:]}
    torch.save(state, bad_weights)
    with pytest.raises(ValueError, match="bad.pt"):
        EDMPrior.from_checkpoint(bad_weights)


# ----------------------------------------------------------------------------- shipped priors
def _held_out_ellipses():
    from invsolve.datasets.training_data import EllipsePhantoms

    return EllipsePhantoms(64, seed=99)


def _held_out_ellipsoid_slices():
    from invsolve.datasets.training_data import EllipsoidSlices

    return EllipsoidSlices(64, seed=99, n_volumes=4, axes=(0,))


def _held_out_brains():
    from invsolve.datasets.brain import BrainSlices

    return BrainSlices(64, split="heldout", seed=0)


def _held_out_brain_volume_slices():
    from invsolve.datasets.brain import BrainTemplates, brain_volume

    volume = brain_volume(BrainTemplates(), torch.Generator().manual_seed(100), 64, 12, split="heldout")
    return [volume[:, k] for k in range(0, 12, 3)] * 7  # indexed as data[i * 7] below


@pytest.mark.parametrize("name, held_out", [("default", _held_out_ellipses), ("ellipsoid_slice", _held_out_ellipsoid_slices),
                                            ("brain", _held_out_brains),
                                            ("brain_slice", _held_out_brain_volume_slices)])
def test_shipped_prior_is_small_documented_and_denoises(name, held_out):
    import hashlib

    import invsolve.priors.default as shipped

    path = shipped.shipped_prior_path(name)
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= 20 * 2**20
    recipe = shipped.shipped_prior_recipe(name)
    for key in ("source", "resolution", "steps_done", "seed", "wall_seconds", "final_loss", "command", "config"):
        assert key in recipe, key
    assert recipe["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.load(path, weights_only=True)["format"] == "invsolve-edm-prior"

    prior = shipped.load_shipped_prior(name)
    assert prior.shape == (1, 64, 64) and prior.value_range == (0.0, 1.0)
    data = held_out()
    x = torch.stack([data[i * 7] for i in range(4)])
    y = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = prior.denoise(y, 0.2)

    def psnr(a, b):
        return float(-10 * torch.log10((a - b).square().mean()))

    assert psnr(d, x) > psnr(y, x) + 8.0


def test_missing_default_prior_is_a_clear_error(tmp_path, monkeypatch):
    import invsolve.priors.default as default

    monkeypatch.setattr(default, "default_prior_path", lambda: tmp_path / "default_prior.pt")
    with pytest.raises(FileNotFoundError, match="default_prior.pt"):
        default.load_default_prior()


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("config"), r"needs the entries \['config'\]"),
    (lambda s: s.pop("state_dict"), r"needs the entries \['state_dict'\]"),
    (lambda s: s["config"].update(width=2**20), "exceeds the bound 1024"),
    (lambda s: s["config"].update(width=1024, channel_mult=[16, 16, 16, 16]), "parameters, more than"),
    (lambda s: next(iter(s["state_dict"].values())).fill_(float("nan")), "NaN/Inf"),
])
def test_damaged_or_hostile_prior_files_are_refused_before_a_network_is_built(tmp_path, damage, message):
    from invsolve.priors.default import default_prior_path

    state = torch.load(default_prior_path(), weights_only=True)
    damage(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as err:
        EDMPrior.from_checkpoint(path)
    assert str(path) in str(err.value)
