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


@pytest.mark.parametrize("extra, message", [
    (["--width", "33"], "width"),
    (["--source", "nifti"], "data_path"),
    (["--init-from", "no-such-prior.pt"], "init_from"),
])
def test_train_prior_errors_leave_no_output_folder(capsys, tmp_path, extra, message):
    out = tmp_path / "run"
    err = _error(capsys, ["train-prior", "--out", str(out), "--steps", "1", "--quiet", *extra])
    assert message in err and not out.exists()


def _damaged_inputs(tmp_path):
    """Files whose messages used to mislead (a NaN voxel read as a noise level, an empty file as a stack error...)."""
    import h5py
    import nibabel as nib
    import numpy as np

    from invsolve.datasets.fastmri_files import ismrmrd_header

    volume = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    nan_voxel, inf_voxel = volume.copy(), volume.copy()
    nan_voxel[3, 3, 1], inf_voxel[0, 0, 0] = np.nan, np.inf
    for name, data in (("nan.nii", nan_voxel), ("inf.nii", inf_voxel), ("allnan.nii", np.full_like(volume, np.nan))):
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name)
    kspace = (np.ones((2, 2, 64, 64)) + 0j).astype(np.complex64)
    kspace[1, 0, 3, 3] = np.nan
    for name, data in (("nan.h5", kspace), ("empty.h5", kspace[:0])):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("kspace", data=data)
            f.create_dataset("ismrmrd_header", data=ismrmrd_header((64, 64), (64, 64), n_coils=2, n_slices=2))
    (tmp_path / "folder").mkdir()


@pytest.mark.parametrize("name, operator, message", [
    ("nan.nii", "ct:views=8", "1 NaN/Inf voxel"),
    ("inf.nii", "ct:views=8", "1 NaN/Inf voxel"),
    ("allnan.nii", "ct:views=8", "768 NaN/Inf voxel"),
    ("nan.h5", "mri:acceleration=4", r"slice\(s\) \[1\] holds NaN/Inf"),
    ("empty.h5", "mri:acceleration=4", "kspace is empty"),
    ("folder", "ct:views=8", "is a folder; expected one file"),
])
def test_damaged_inputs_are_named_with_what_is_wrong(capsys, tmp_path, name, operator, message):
    import re

    _damaged_inputs(tmp_path)
    out = tmp_path / ("r.nii" if name.endswith(".nii") else "r.h5")
    err = _error(capsys, ["reconstruct", str(tmp_path / name), "--out", str(out), "--operator", operator,
                          "--sampler", "baseline", "--resize", "--quiet"])
    assert re.search(message, err) and name in err and not out.exists(), err


def test_absurd_noise_levels_are_refused_at_the_spec():
    with pytest.raises(ValueError, match=r"noise.*\[0, 100\]"):
        parse_operator_spec("ct:views=8,noise=1e300")


def test_a_full_disk_during_a_study_is_one_line_and_the_rerun_completes(capsys, tmp_path, monkeypatch):
    import errno

    import yaml

    import invsolve.study.runner as runner

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**BASE, "dataset": {"kind": "phantoms", "count": 2}, "figures": False}))
    real, calls = runner._save_case, []

    def full_disk(out, record, *args, **kwargs):
        calls.append(record["case_id"])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "cases" / record["case_id"]))
        return real(out, record, *args, **kwargs)

    monkeypatch.setattr(runner, "_save_case", full_disk)
    err = _error(capsys, ["study", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert "No space left on device" in err and "rerun the same command" in err
    monkeypatch.setattr(runner, "_save_case", real)
    assert main(["study", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(list((tmp_path / "out" / "cases").glob("*.json"))) == 2


def test_a_disk_error_while_writing_hdf5_is_one_line_not_a_crash(tmp_path):
    """A write limit (as a full disk) hit while the .h5 output is written: HDF5 used to crash at exit (SIGSEGV)."""
    import resource
    import subprocess
    import sys

    from invsolve.datasets.fastmri_files import write_synthetic_dataset

    (source,) = write_synthetic_dataset(tmp_path / "in", n_volumes=1, n_slices=4, size=64, n_coils=8, seed=0)
    out = tmp_path / "out"
    out.mkdir()

    def limit_file_size():  # a file may not grow past 60 kB (the output needs ~130 kB); Python ignores SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    run = subprocess.run([sys.executable, "-m", "invsolve", "reconstruct", str(source), "--out", str(out / "r.h5"),
                          "--operator", "mri:acceleration=4", "--sampler", "baseline", "--quiet"],
                         preexec_fn=limit_file_size, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(run.stderr.strip().splitlines()) == 1 and "File too large" in run.stderr
    assert list(out.iterdir()) == []


def test_plain_8x_works_on_64_column_multicoil_kspace(capsys, tmp_path):
    """fastMRI's 8x pair (centre fraction 0.04) leaves 3 central columns at width 64, too few for coil maps: the
    default centre is widened to the calibration minimum; another centre fraction is used as given."""
    import json

    from invsolve.datasets.fastmri_files import write_synthetic_dataset

    (source,) = write_synthetic_dataset(tmp_path, n_volumes=1, n_slices=1, size=64, n_coils=4, seed=0)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(source), "--out", str(out), "--operator", "mri:acceleration=8",
                 "--sampler", "baseline", "--quiet"]) == 0
    (record,) = json.loads(out.with_suffix(".json").read_text())["slices"]
    assert record["center_columns"] >= 4 and 6.5 < record["acceleration"] < 8.0
    err = _error(capsys, ["reconstruct", str(source), "--out", str(tmp_path / "s.h5"), "--operator",
                          "mri:acceleration=8,center_fraction=0.03", "--sampler", "baseline", "--quiet"])
    assert "center_fraction" in err and "at least 4" in err


@pytest.mark.parametrize("where, message", [
    ("file/r.nii", "is a file, not a folder"),
    ("file/sub/r.nii", "so the folder"),
    ("folder.nii", "is a folder; name a file"),
])
def test_output_locations_are_checked_before_any_work(capsys, tmp_path, monkeypatch, where, message):
    from nibabel.testing import data_path

    import invsolve.study.runner as runner

    (tmp_path / "file").write_text("")
    (tmp_path / "folder.nii").mkdir()

    def no_work(*args, **kwargs):
        raise AssertionError("a case ran before the output location was checked")

    monkeypatch.setattr(runner.CaseRunner, "run", no_work)
    err = _error(capsys, ["reconstruct", f"{data_path}/anatomical.nii", "--out", str(tmp_path / where),
                          "--operator", "ct:views=8", "--sampler", "baseline", "--resize", "--overwrite", "--quiet"])
    assert message in err


def test_a_refused_prior_file_ends_a_study_before_anything_is_written(capsys, tmp_path):
    import yaml

    torch.save({"x": 1}, tmp_path / "bad.pt")
    for prior, message in (({"path": str(tmp_path / "bad.pt"), "name": "x"}, "not an invsolve EDM prior"),
                           ({"path": str(tmp_path / "none.pt")}, "does not exist")):
        config = tmp_path / "study.yaml"
        config.write_text(yaml.safe_dump({**BASE, "priors": [prior], "samplers": ["dps"]}))
        err = _error(capsys, ["study", str(config), "--out", str(tmp_path / "out"), "--quiet"])
        assert message in err and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="a prior is 'default', a path or"):
        parse_config({**BASE, "priors": [{"file": "x.pt"}]})


def test_measurements_refuse_an_empty_batch_nan_images_and_say_which_cast_works():
    from invsolve import GaussianNoise, Measurement
    from invsolve.pipeline.problems import simulated_problem

    problem = simulated_problem(torch.rand(1, 1, 32, 32), parse_operator_spec("mri:acceleration=4"), mask_seed=0,
                                noise_seed=1)
    meas = problem.measurement
    with pytest.raises(ValueError, match="batch size 0"):
        Measurement(meas.operator, GaussianNoise(0.1), meas.y[:0])
    nan_image = torch.full((1, 1, 32, 32), float("nan"))
    for method in (meas.log_likelihood, meas.grad_log_likelihood, meas.data_fidelity):
        with pytest.raises(ValueError, match="x"):
            method(nan_image)
    with pytest.raises(TypeError, match=r"y.to\(torch.float32\)") as err:
        Measurement(meas.operator, GaussianNoise(0.1), meas.y.half())
    assert "float32 and float64" in str(err.value)
    Measurement(meas.operator, GaussianNoise(0.1), meas.y.half().to(torch.float32))  # the advice works, for MRI too


def test_a_slice_subset_into_nifti_output_is_refused_before_any_work(capsys, tmp_path, monkeypatch):
    from nibabel.testing import data_path

    import invsolve.study.runner as runner

    def no_work(*args, **kwargs):
        raise AssertionError("a case ran before the slice selection was checked")

    monkeypatch.setattr(runner.CaseRunner, "run", no_work)
    err = _error(capsys, ["reconstruct", f"{data_path}/anatomical.nii", "--out", str(tmp_path / "r.nii.gz"),
                          "--operator", "ct:views=8", "--sampler", "dps", "--slices", "0", "--resize", "--quiet"])
    assert "holds whole volumes (25 slices each)" in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_claiming_more_voxels_than_the_file_holds_is_refused_before_allocating(capsys, tmp_path, suffix):
    import gzip
    import struct

    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "v.nii")
    raw = bytearray((tmp_path / "v.nii").read_bytes())
    struct.pack_into("<8h", raw, 40, 3, 32767, 32767, 32767, 1, 1, 1, 1)  # dim: 32767^3 voxels (~140 TB)
    source = tmp_path / f"huge{suffix}"
    source.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    err = _error(capsys, ["reconstruct", str(source), "--out", str(tmp_path / "r.nii"), "--operator", "ct:views=8",
                          "--sampler", "baseline", "--resize", "--quiet"])
    assert "claims a 32767x32767x32767 volume" in err and "not a readable NIfTI file" in err
