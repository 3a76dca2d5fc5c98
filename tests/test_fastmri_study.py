"""End to end: synthetic multi-coil fastMRI files -> study at 4x equispaced with the default prior -> table,
and `python -m fastmri.evaluate` on the submission folder agreeing with our per-volume numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from support import fastmri_evaluate

from invsolve.datasets.fastmri_files import write_synthetic_dataset
from invsolve.study import parse_config, run_study


def _volumes(out: Path) -> list[dict]:
    with open(out / "volumes.csv") as f:
        return list(csv.DictReader(f))


def _agrees(ours: list[float], printed: tuple[str, str]) -> None:
    """fastmri.evaluate prints mean +/- 2 sample standard deviations with 4 significant digits."""
    values = np.asarray(ours)
    assert (f"{values.mean():.4g}", f"{2 * values.std(ddof=1):.4g}") == printed


def test_multicoil_study_matchesfastmri_evaluate(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_volumes=2, n_slices=2, size=64, n_coils=4, seed=7)
    config = parse_config({
        "name": "synthetic multi-coil 4x",
        "dataset": {"kind": "fastmri", "path": str(data)},
        "operators": ["mri:acceleration=4,mask=equispaced"],
        "priors": ["default"],
        "samplers": ["baseline", {"name": "dps", "steps": 20, "samples": 2}],
        "figures": False,
    })
    out = tmp_path / "study"
    report = run_study(config, out, progress=False)
    assert report.n_cases == 2 * 2 * 2 and len(report.rows) == 8
    volumes = _volumes(out)
    assert len(volumes) == 4 and all(v["slices"] == "2" for v in volumes)
    runs = sorted({v["run"] for v in volumes})
    for run in runs:
        ours = [v for v in volumes if v["run"] == run]
        for targets in (out / "submission" / "targets", data):  # our targets, and the files' own
            printed = fastmri_evaluate(targets, out / "submission" / run, "multicoil")
            for key in ("NMSE", "PSNR", "SSIM"):
                _agrees([float(v[key]) for v in ours], printed[key])
    summary = (out / "summary.md").read_text()
    assert "Per volume, exactly as `python -m fastmri.evaluate`" in summary
    psnr = {v["method"].split(" ")[0]: [] for v in volumes}
    for v in volumes:
        psnr[v["method"].split(" ")[0]].append(float(v["PSNR"]))
    assert min(psnr["dps"]) > max(psnr["baseline"]) + 1.0  # the prior helps on every volume


def test_singlecoil_study_scores_against_reconstruction_esc(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_volumes=2, n_slices=2, size=64, n_coils=None, seed=3)
    config = parse_config({"dataset": {"kind": "fastmri", "path": str(data), "slices": [0, 1]},
                           "operators": ["mri:acceleration=8,center_fraction=0.08"], "samplers": ["baseline", "tv"], "figures": False})
    out = tmp_path / "study"
    run_study(config, out, progress=False)
    volumes = _volumes(out)
    for run in sorted({v["run"] for v in volumes}):
        printed = fastmri_evaluate(data, out / "submission" / run, "singlecoil")
        _agrees([float(v["PSNR"]) for v in volumes if v["run"] == run], printed["PSNR"])


def test_the_kspace_noise_estimate_matches_the_known_noise(tmp_path):
    """Files written with a known noise level (the ``noise_std`` attribute) of brains and of ellipses, 8 coils:
    the estimate from the undersampled k-space alone is within 15% of the truth on every slice."""
    import math

    import torch

    from invsolve.datasets.fastmri_files import read_fastmri
    from invsolve.operators import fastmri_mask
    from invsolve.pipeline.problems import estimate_kspace_noise

    paths = [*write_synthetic_dataset(tmp_path / "b", n_volumes=2, n_slices=2, size=64, n_coils=8, seed=0,
                                      source="brain"),
             *write_synthetic_dataset(tmp_path / "e", n_volumes=2, n_slices=2, size=64, n_coils=8, seed=4)]
    columns = fastmri_mask((64, 64), 4, 0.08, kind="equispaced", seed=0)[0].bool()
    ratios = []
    for path in paths:
        volume = read_fastmri(path)
        truth = volume.info.attrs["noise_std"] / math.sqrt(2)  # per real component
        for kspace in torch.from_numpy(volume.kspace):
            ratios.append(estimate_kspace_noise(kspace * columns, columns) / truth)
    assert all(0.85 < r < 1.15 for r in ratios), ratios


def test_pigdm_refuses_measured_kspace_whose_model_is_inexact(tmp_path, capsys):
    """Measured multi-coil k-space through estimated coil maps misfits the data by ~19 sigma_y at the truth;
    PiGDM, which weighs the data by 1 / sigma_y^2, ended below zero-filled there: refused, with the reason."""
    import pytest

    from invsolve.cli import main

    (path,) = write_synthetic_dataset(tmp_path / "data", n_volumes=1, n_slices=1, size=64, n_coils=8, seed=0,
                                      source="brain")
    with pytest.raises(ValueError, match="pigdm needs a forward model exact up to the noise"):
        parse_config({"dataset": {"kind": "fastmri", "path": str(tmp_path / "data")},
                      "operators": ["mri:acceleration=4"], "samplers": ["pigdm"]})
    assert main(["reconstruct", str(path), "--out", str(tmp_path / "r.h5"), "--operator", "mri:acceleration=4",
                 "--sampler", "pigdm", "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "forward model exact up to the noise" in err and not (tmp_path / "r.h5").exists()
