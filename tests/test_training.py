"""Training entry point: exact resume, checkpoints, loss log, config checks, and the data sources."""

from __future__ import annotations

import argparse
import csv

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from invsolve.datasets.ellipsoids import random_ellipsoids, volume_slice
from invsolve.datasets.training_data import (
    EllipsePhantoms,
    EllipsoidSlices,
    FastMRISlices,
    NiftiSlices,
    build_training_data,
    item_generator,
)
from invsolve.priors.edm import EDMPrior
from invsolve.training import TrainConfig, ema_beta, train
from invsolve.training_cli import add_train_arguments, config_from_args

TINY = dict(
    resolution=16,
    width=32,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[8],
    dropout=0.1,  # exercises the global RNG state in checkpoints
    batch_size=2,
    warmup_steps=2,
    ema_halflife_images=4.0,
    log_every=1,
    seed=5,
)


class Interrupt(Exception):
    pass


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for pid, st in a["optimizer"]["state"].items():
        for name, value in st.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), f"optimizer state {pid}.{name} differs"
    assert torch.equal(a["generator"], b["generator"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["step"] == b["step"] and a["images"] == b["images"]


def test_resume_after_interruption_is_bit_exact(tmp_path):
    straight = TrainConfig(out_dir=str(tmp_path / "a"), steps=4, checkpoint_every=2, **TINY)
    result = train(straight)
    assert result.step == 4 and not result.stopped_early

    resumed = TrainConfig(out_dir=str(tmp_path / "b"), steps=4, checkpoint_every=2, **TINY)

    def crash_at_3(info):
        if info.step == 3:  # step 3 was logged but not checkpointed: resume must redo it
            raise Interrupt

    with pytest.raises(Interrupt):
        train(resumed, callback=crash_at_3)
    assert [r["step"] for r in read_log(tmp_path / "b" / "loss.csv")] == ["1", "2", "3"]
    steps_seen = []
    train(resumed, callback=lambda info: steps_seen.append(info.step))
    assert steps_seen == [3, 4]

    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert_same_state(a, b)
    log_a, log_b = read_log(tmp_path / "a" / "loss.csv"), read_log(tmp_path / "b" / "loss.csv")
    assert [(r["step"], r["loss"], r["lr"]) for r in log_a] == [(r["step"], r["loss"], r["lr"]) for r in log_b]

    # The exported EMA prior and the checkpoint both load as priors with identical outputs.
    p1 = EDMPrior.from_checkpoint(tmp_path / "a" / "prior.pt")
    p2 = EDMPrior.from_checkpoint(tmp_path / "b" / "checkpoint.pt")
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(p1.denoise(x, 0.2), p2.denoise(x, 0.2), rtol=0, atol=0)
    assert p1.value_range == (0.0, 1.0) and p1.config["source"] == "ellipses"


def test_resume_refuses_a_changed_config_and_extends_steps(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=1, checkpoint_every=1, **TINY)
    train(cfg)
    changed = TrainConfig(out_dir=str(tmp_path), steps=2, checkpoint_every=1, **{**TINY, "lr": 1e-3})
    with pytest.raises(ValueError, match=r"lr"):
        train(changed)
    longer = train(TrainConfig(out_dir=str(tmp_path), steps=2, checkpoint_every=1, **TINY))
    assert longer.step == 2
    fresh = train(TrainConfig(out_dir=str(tmp_path), steps=1, checkpoint_every=1, resume=False, **TINY))
    assert fresh.step == 1 and len(read_log(tmp_path / "loss.csv")) == 1


def test_fine_tuning_starts_from_the_given_prior(tmp_path):
    base = train(TrainConfig(out_dir=str(tmp_path / "base"), steps=2, checkpoint_every=2, **{**TINY, "seed": 6}))
    start = EDMPrior.from_checkpoint(base.prior).denoiser.net.state_dict()
    tuned_cfg = TrainConfig(out_dir=str(tmp_path / "tuned"), steps=1, checkpoint_every=1, init_from=str(base.prior),
                            source="ellipsoids", data_options={"axes": [0], "n_volumes": 4}, **{**TINY, "dropout": 0.0})
    with pytest.raises(ValueError, match="different network"):
        train(TrainConfig(**{**tuned_cfg.to_dict(), "sigma_data": 0.3, "out_dir": str(tmp_path / "bad")}))
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(TrainConfig(**{**tuned_cfg.to_dict(), "init_from": str(tmp_path / "no.pt"), "out_dir": str(tmp_path / "m")}))
    tuned = torch.load(train(tuned_cfg).checkpoint, weights_only=True)
    fresh_cfg = TrainConfig(**{**tuned_cfg.to_dict(), "init_from": None, "out_dir": str(tmp_path / "fresh")})
    fresh = torch.load(train(fresh_cfg).checkpoint, weights_only=True)
    # one Adam step moves every weight by at most about lr; a fresh start (another seed's init) is far away
    bound = 2 * tuned_cfg.lr + 1e-7
    for key in ("model", "ema"):
        assert all((tuned[key][k] - start[k]).abs().max() <= bound for k in start), key
    assert max(float((fresh["model"][k] - start[k]).abs().max()) for k in start) > 100 * bound


def test_wall_time_limit_stops_with_a_checkpoint(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=50, checkpoint_every=100, max_wall_seconds=1e-6, **TINY)
    result = train(cfg)
    assert result.stopped_early and result.step == 1
    assert torch.load(result.checkpoint, weights_only=True)["step"] == 1


def test_config_validation_and_cli_arguments(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(out_dir="x", batch_size=0)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"out_dir": "x", "learning_rate": 1.0})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("steps: 7\nlr: 0.001\nchannel_mult: [1, 2]\n")
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path / "o"), "--config", str(cfg_file), "--lr", "0.002", "--source", "fastmri", "--fastmri-mode", "complex", "--attn-resolutions", "8,16", "--init-from", "base.pt"])
    cfg = config_from_args(args)
    assert (cfg.steps, cfg.lr, cfg.channel_mult, cfg.attn_resolutions) == (7, 0.002, [1, 2], [8, 16])
    assert cfg.init_from == "base.pt"
    assert cfg.data_options == {"mode": "complex"} and cfg.source == "fastmri"


def test_ema_halflife_rule():
    cfg = TrainConfig(out_dir="x", batch_size=8, ema_halflife_images=1000.0, ema_rampup_ratio=None)
    assert ema_beta(cfg, 10_000) == pytest.approx(0.5 ** (8 / 1000))
    ramped = TrainConfig(out_dir="x", batch_size=8, ema_halflife_images=1000.0, ema_rampup_ratio=0.05)
    assert ema_beta(ramped, 800) == pytest.approx(0.5 ** (8 / 40))


# ------------------------------------------------------------------------------------ data
def test_procedural_sources_are_seeded_per_index():
    ds = EllipsePhantoms(16, seed=3)
    assert torch.equal(ds[5], EllipsePhantoms(16, seed=3)[5])
    assert not torch.equal(ds[5], ds[6]) and not torch.equal(ds[5], EllipsePhantoms(16, seed=4)[5])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    vol = random_ellipsoids((8, 10, 12), g1)
    assert vol.shape == (1, 8, 10, 12) and float(vol.min()) >= 0 and float(vol.max()) <= 1
    assert torch.equal(vol, random_ellipsoids((8, 10, 12), g2))
    slices = EllipsoidSlices(16, n_volumes=2, seed=0, central_fraction=0.5)
    assert len(slices) == 2 * 3 * 8 and slices[0].shape == (1, 16, 16)
    # item 3 = volume 0, axis 0, central slice 4 + 3
    assert torch.equal(slices[3], volume_slice(random_ellipsoids(16, item_generator(0, 0)), 0, 7))
    with pytest.raises(ValueError, match="seed"):
        EllipsePhantoms(16, seed=-1)
    with pytest.raises(ValueError, match="source"):
        build_training_data("imagenet", 16)


def test_nifti_slices(tmp_path):
    rng = np.random.default_rng(0)
    vol3 = rng.normal(100, 20, size=(12, 10, 6)).astype(np.float32)
    vol4 = rng.normal(0, 1, size=(8, 8, 5, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol3, np.eye(4)), tmp_path / "a.nii.gz")
    (tmp_path / "sub").mkdir()
    nib.save(nib.Nifti1Image(vol4, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "sub" / "b.nii")
    ds = NiftiSlices(tmp_path, 16, axis=2)
    assert len(ds) == 6 + 2 * 5
    items = torch.stack([ds[i] for i in range(len(ds))])
    assert items.shape == (16, 1, 16, 16) and float(items.min()) >= 0 and float(items.max()) <= 1
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        NiftiSlices(tmp_path / "missing_dir")
    (tmp_path / "bad.nii").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.nii"):
        NiftiSlices(tmp_path, 16)


def _write_fastmri(path, kspace, rss=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        if rss is not None:
            f.create_dataset("reconstruction_rss", data=rss)


def test_fastmri_slices(tmp_path):
    rng = np.random.default_rng(0)
    single = (rng.normal(size=(3, 24, 20)) + 1j * rng.normal(size=(3, 24, 20))).astype(np.complex64)
    multi = (rng.normal(size=(2, 4, 24, 20)) + 1j * rng.normal(size=(2, 4, 24, 20))).astype(np.complex64)
    _write_fastmri(tmp_path / "single.h5", single)
    _write_fastmri(tmp_path / "multi.h5", multi, rss=np.abs(rng.normal(size=(2, 16, 16))).astype(np.float32))
    mag = FastMRISlices(tmp_path, 16, mode="magnitude", crop=16)
    assert len(mag) == 5 and mag.channels == 1
    m = torch.stack([mag[i] for i in range(5)])
    assert m.shape == (5, 1, 16, 16) and float(m.min()) >= 0 and float(m.max()) <= 1
    cplx = FastMRISlices(tmp_path / "single.h5", 16, mode="complex", crop=16)
    c = torch.stack([cplx[i] for i in range(3)])
    assert c.shape == (3, 2, 16, 16) and cplx.channels == 2
    assert float(torch.quantile(c.square().sum(1).sqrt().flatten(), 0.995)) == pytest.approx(1.0, rel=0.05)
    multi_c = FastMRISlices(tmp_path / "multi.h5", 16, mode="complex", crop=16)
    assert multi_c[1].shape == (2, 16, 16) and torch.isfinite(multi_c[1]).all()
    _write_fastmri(tmp_path / "other.h5", np.zeros((2, 2), np.complex64))
    with pytest.raises(ValueError, match="other.h5"):
        FastMRISlices(tmp_path / "other.h5", 16)


def test_training_on_complex_file_slices(tmp_path):
    rng = np.random.default_rng(1)
    kspace = (rng.normal(size=(4, 16, 16)) + 1j * rng.normal(size=(4, 16, 16))).astype(np.complex64)
    _write_fastmri(tmp_path / "k.h5", kspace)
    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), source="fastmri", data_path=str(tmp_path / "k.h5"), data_options={"mode": "complex", "crop": 16},
        steps=1, checkpoint_every=1, **TINY,
    )  # fmt: skip
    train(cfg)
    prior = EDMPrior.from_checkpoint(tmp_path / "run" / "prior.pt")
    assert prior.shape == (2, 16, 16) and prior.value_range == (-1.0, 1.0)
