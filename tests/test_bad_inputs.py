"""Bad input gets a clear error before any work (items of the reliability issue, one regression test each)."""

from __future__ import annotations

import pytest
import torch

from invsolve.cli import main
from invsolve.pipeline import parse_operator_spec
from invsolve.pipeline.problems import simulated_problem
from invsolve.study import load_config, parse_config

BASE = {"dataset": {"kind": "phantoms", "count": 1}, "operators": ["ct:views=8"], "samplers": ["baseline"]}


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_study_overrides_and_flags_are_checked():
    with pytest.raises(ValueError, match="--steps must be a positive integer"):
        parse_config(BASE, steps=0)
    with pytest.raises(ValueError, match="figures must be true or false"):
        parse_config({**BASE, "figures": "false"})


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="views is given twice"):
        parse_operator_spec("ct:views=8,views=16")
    path = tmp_path / "study.yaml"
    path.write_text("dataset: {kind: phantoms, count: 1}\noperators: [ct:views=8]\nsamplers: [baseline]\n"
                    "samplers: [tv]\n")
    with pytest.raises(ValueError, match="duplicate key 'samplers'"):
        load_config(path)


@pytest.mark.parametrize("text, message", [("inpainting:fraction=1e-9", "observes no pixel"),
                                           ("mri:acceleration=1000", "samples no k-space column"),
                                           ("blur:sigma=1e4", "larger than the image")])
def test_operators_that_measure_nothing_or_cannot_fit_are_refused(text, message):
    truth = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=message):
        simulated_problem(truth, parse_operator_spec(text), mask_seed=0, noise_seed=0)


@pytest.mark.parametrize("device, message", [("bogus", "must be a torch device"), ("cuda:7", "CUDA"),
                                             ("meta", "must be 'cpu' or 'cuda")])
def test_bad_devices_are_one_line_errors(capsys, tmp_path, device, message):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    err = _error(capsys, ["reconstruct", "x.png", "--out", str(tmp_path / "o.png"), "--operator", "ct:views=8",
                          "--device", device])
    assert message in err


@pytest.mark.parametrize("setting, message", [("zeta=abc", "zeta must be a number"), ("zeta=inf", "zeta must be"),
                                              ("cg_max_iter=0", "cg_max_iter must be an integer")])
def test_sampler_settings_are_checked_on_the_command_line(capsys, tmp_path, setting, message):
    import numpy as np
    from skimage.io import imsave

    sampler = "pigdm" if setting.startswith("cg") else "dps"
    image = tmp_path / "x.png"
    imsave(image, np.zeros((64, 64), np.uint8), check_contrast=False)
    err = _error(capsys, ["reconstruct", str(image), "--out", str(tmp_path / "o.png"), "--operator", "ct:views=8",
                          "--sampler", sampler, "--set", setting])
    assert message in err


def test_a_volume_index_that_does_not_exist_is_refused(capsys, tmp_path):
    from nibabel.testing import data_path

    err = _error(capsys, ["reconstruct", f"{data_path}/anatomical.nii", "--out", str(tmp_path / "r.nii.gz"),
                          "--operator", "ct:views=8", "--volume", "1", "--resize"])
    assert "is 3D" in err and "--volume 1" in err


def test_a_result_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A full disk while the second NIfTI file is written leaves no file of the result behind (and a rerun works)."""
    import errno

    from nibabel.testing import data_path

    import invsolve.datasets.nifti as nifti
    from invsolve.reconstruct import reconstruct_file

    real, calls = nifti.write_nifti, []

    def full_disk_on_second(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(nifti, "write_nifti", full_disk_on_second)
    out = tmp_path / "r.nii"
    with pytest.raises(OSError, match="No space left"):
        reconstruct_file(f"{data_path}/anatomical.nii", out, operator="ct:views=8", sampler="baseline",
                         resize="prior", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a partial result or staging folder was left behind"
    monkeypatch.setattr(nifti, "write_nifti", real)
    report = reconstruct_file(f"{data_path}/anatomical.nii", out, operator="ct:views=8", sampler="baseline",
                              resize="prior", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.nii", "r_std.nii"]
    assert len(report.outputs) == 3
