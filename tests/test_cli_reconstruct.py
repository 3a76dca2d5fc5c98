"""`invsolve reconstruct` / `benchmark` end to end on real files, and every user mistake as one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from invsolve.cli import build_parser, main

ANATOMICAL = Path(data_path) / "anatomical.nii"  # real T1, 33 x 41 x 25, big-endian int16
EPI_4D = Path(data_path) / "example4d.nii.gz"  # real EPI, 128 x 96 x 24 x 2


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_nifti_volume_keeps_affine_and_header(tmp_path, capsys):
    out = tmp_path / "recon.nii.gz"
    assert main(["reconstruct", str(ANATOMICAL), "--out", str(out), "--operator", "ct:views=16", "--sampler", "dps",
                 "--steps", "2", "--samples", "2", "--resize", "--quiet"]) == 0
    assert "PSNR" in capsys.readouterr().out
    source = nib.load(ANATOMICAL)
    for path in (out, tmp_path / "recon_std.nii.gz"):
        image = nib.load(path)
        assert image.shape == source.shape and np.array_equal(image.affine, source.affine)
        for field in ("sform_code", "qform_code", "pixdim", "quatern_b", "quatern_c", "quatern_d", "srow_x",
                      "srow_y", "srow_z", "xyzt_units", "dim"):
            assert np.array_equal(image.header[field], source.header[field]), field
        assert image.get_data_dtype() == np.dtype(">f4")  # float32, the input's byte order
        assert np.isfinite(image.get_fdata()).all()
    std = nib.load(tmp_path / "recon_std.nii.gz").get_fdata()
    assert std.min() >= 0 and std.max() > 0
    sidecar = json.loads((tmp_path / "recon.json").read_text())
    assert sidecar["operator"].startswith("ct:views=16") and len(sidecar["slices"]) == 25  # axial = 3rd axis (LAS)


def test_nifti_scores_are_on_the_input_grid_in_its_window(tmp_path, capsys):
    """The sidecar's metrics are the written volume against the input clipped to its percentile window (range:
    the window's width), recomputed here from the files alone; the sidecar says so."""
    from invsolve.datasets.nifti import intensity_window
    from invsolve.metrics import psnr

    out = tmp_path / "recon.nii"
    assert main(["reconstruct", str(ANATOMICAL), "--out", str(out), "--operator", "ct:views=16", "--sampler", "tv",
                 "--resize", "--quiet"]) == 0
    sidecar = json.loads((tmp_path / "recon.json").read_text())
    source = np.asarray(nib.load(ANATOMICAL).dataobj, dtype=np.float64)
    lo, hi = intensity_window(source, (0.5, 99.5))
    written = np.asarray(nib.load(out).dataobj, dtype=np.float64)
    expected = psnr(np.moveaxis(np.clip(source, lo, hi) - lo, 2, 0), np.moveaxis(written - lo, 2, 0),
                    data_range=hi - lo)
    assert sidecar["metrics_vs_reference"]["psnr"] == pytest.approx(expected, abs=0.01)
    assert "input's own voxels (33x41" in sidecar["metrics_scored_on"]["grid"]
    assert "[0.5, 99.5] percentile window" in sidecar["metrics_scored_on"]["data_range"]
    prior_grid = np.mean([s["psnr"] for s in sidecar["slices"]])
    assert prior_grid > sidecar["metrics_vs_reference"]["psnr"]  # the padded background flattered the old score


def test_4d_nifti_needs_a_volume(tmp_path, capsys):
    out = str(tmp_path / "r.nii.gz")
    err = _error(capsys, ["reconstruct", str(EPI_4D), "--out", out, "--operator", "inpainting:fraction=0.5",
                          "--sampler", "baseline", "--resize"])
    assert "4D with 2 volumes" in err and "--volume" in err
    assert main(["reconstruct", str(EPI_4D), "--out", out, "--operator", "inpainting:fraction=0.5", "--sampler",
                 "baseline", "--resize", "--volume", "1", "--quiet"]) == 0
    image, source = nib.load(out), nib.load(EPI_4D)
    assert image.shape == source.shape[:3] and np.array_equal(image.affine, source.affine)
    assert np.array_equal(image.header.get_zooms(), source.header.get_zooms()[:3])


def test_fastmri_file_to_submission_h5(tmp_path, capsys):
    from invsolve.datasets.fastmri_files import write_synthetic_dataset

    (path,) = write_synthetic_dataset(tmp_path / "data", n_volumes=1, n_slices=2, size=64, n_coils=4, seed=5)
    out = tmp_path / "recon.h5"
    assert main(["reconstruct", str(path), "--out", str(out), "--operator", "mri:acceleration=4", "--sampler", "dps",
                 "--steps", "3", "--samples", "2", "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        assert f["reconstruction"].shape == (2, 64, 64) and f["reconstruction"].dtype == np.float32
        assert f["reconstruction_std"].shape == (2, 64, 64)
    sidecar = json.loads((tmp_path / "recon.json").read_text())
    assert sidecar["reference"] == "fully sampled k-space" and sidecar["metrics_vs_reference"]["psnr"] > 15
    err = _error(capsys, ["reconstruct", str(path), "--out", str(out), "--operator", "mri:acceleration=4"])
    assert "exists" in err and "--overwrite" in err
    err = _error(capsys, ["reconstruct", str(path), "--out", str(tmp_path / "x.h5"), "--operator", "ct:views=8"])
    assert "only the 'mri' operator applies" in err
    err = _error(capsys, ["reconstruct", str(path), "--out", str(tmp_path / "x.nii.gz"), "--operator", "mri:acceleration=4"])
    assert "NIfTI output needs a NIfTI input" in err


def test_png_in_png_out(tmp_path, capsys):
    from skimage.io import imread, imsave

    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[16:48, 20:44] = 180
    src = tmp_path / "in.png"
    imsave(src, pixels, check_contrast=False)
    out = tmp_path / "out.png"
    assert main(["reconstruct", str(src), "--out", str(out), "--operator", "blur:sigma=1.5", "--sampler", "red-diff",
                 "--steps", "3", "--samples", "2", "--quiet"]) == 0
    assert imread(out).shape == (64, 64) and imread(tmp_path / "out_std.png").shape == (64, 64)
    assert set(json.loads((tmp_path / "out.json").read_text())["png_ranges"]) == {"mean", "std"}


@pytest.mark.parametrize(
    ("make", "argv_tail", "message"),
    [
        (None, ["--operator", "ct:views=8"], "does not exist"),
        ("notes.txt", ["--operator", "ct:views=8"], "unsupported type '.txt'"),
        ("corrupt.h5", ["--operator", "mri:acceleration=4"], "not a readable HDF5 file"),
        ("nokspace.h5", ["--operator", "mri:acceleration=4"], "'kspace'"),
        ("flat.nii.gz", ["--operator", "ct:views=8"], "2D"),
        ("five.nii.gz", ["--operator", "ct:views=8"], "5D"),
        ("in.npy", ["--operator", "ct:vews=8"], "unknown parameter"),
        ("in.npy", ["--operator", "ct:views=8", "--sampler", "dsp"], "unknown sampler 'dsp'"),
        ("in.npy", ["--operator", "ct:views=8", "--steps", "0"], "steps must be a positive integer"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, make, argv_tail, message):
    path = tmp_path / (make or "missing.nii.gz")
    if make == "notes.txt":
        path.write_text("hello")
    elif make == "corrupt.h5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(200))
    elif make == "nokspace.h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("reconstruction_rss", data=np.zeros((1, 8, 8), np.float32))
    elif make == "flat.nii.gz":
        nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), path)
    elif make == "five.nii.gz":
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4)), path)
    elif make == "in.npy":
        np.save(path, np.zeros((64, 64)))
    err = _error(capsys, ["reconstruct", str(path), "--out", str(tmp_path / "o.h5"), *argv_tail])
    assert message in err


def test_png_output_of_a_volume_is_refused(tmp_path, capsys):
    err = _error(capsys, ["reconstruct", str(ANATOMICAL), "--out", str(tmp_path / "o.png"), "--operator",
                          "ct:views=8", "--resize"])
    assert "PNG output holds one slice" in err


@pytest.mark.parametrize("command", ["demo", "train-prior", "reconstruct", "study", "benchmark"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0 and "usage: invsolve " + command in capsys.readouterr().out


def test_benchmark_command(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["benchmark", "--tasks", "Inpainting 50%", "--samplers", "baseline,dps", "--phantoms", "2",
                 "--steps", "2", "--samples", "2", "--out", str(out), "--quiet"]) == 0
    table = out.read_text()
    assert "| Inpainting 50% | baseline |" in table and "| Inpainting 50% | dps (2 steps, 2 samples) |" in table
    ratio = float(table.strip().splitlines()[-1].split("|")[-2])
    assert ratio > 1.0  # DPS backpropagates through the network: slower than bare evaluations
    err = _error(capsys, ["benchmark", "--tasks", "MRI 3x", "--phantoms", "1"])
    assert "unknown task" in err


@pytest.mark.parametrize("sampler, prior", [("mbir3d", "default"), ("dds3d", "brain_slice")])
def test_3d_samplers_reconstruct_the_real_brain_volume_with_its_header(tmp_path, capsys, sampler, prior):
    out = tmp_path / "mbir.nii.gz"
    assert main(["reconstruct", str(ANATOMICAL), "--out", str(out), "--operator", "ct:views=8", "--sampler", sampler,
                 "--prior", prior, "--steps", "3", "--samples", "2", "--resize", "--quiet"]) == 0
    source, image = nib.load(ANATOMICAL), nib.load(out)
    assert image.shape == source.shape and np.array_equal(image.affine, source.affine)
    for field in ("sform_code", "qform_code", "pixdim", "srow_x", "srow_y", "srow_z", "xyzt_units"):
        assert np.array_equal(image.header[field], source.header[field]), field
    assert np.isfinite(image.get_fdata()).all() and nib.load(tmp_path / "mbir_std.nii.gz").get_fdata().max() > 0
    png = tmp_path / "x.png"
    from skimage.io import imsave

    imsave(png, np.zeros((64, 64), np.uint8), check_contrast=False)
    err = _error(capsys, ["reconstruct", str(png), "--out", str(tmp_path / "x.h5"), "--operator", "ct:views=8",
                          "--sampler", sampler])
    assert f"{sampler} reconstructs one volume" in err


def test_mbir3d_on_the_brain_volume_with_a_3d_mri_mask_and_limited_angle_ct(tmp_path, capsys):
    for operator in ("mri:acceleration=8,mask=poisson-disc", "ct:views=30,arc=90"):
        out = tmp_path / "recon.nii.gz"
        assert main(["reconstruct", str(ANATOMICAL), "--out", str(out), "--operator", operator, "--sampler",
                     "mbir3d", "--set", "lam_xy=4e-4", "--steps", "2", "--resize", "--quiet", "--overwrite"]) == 0
        image = nib.load(out)
        assert np.array_equal(image.affine, nib.load(ANATOMICAL).affine) and np.isfinite(image.get_fdata()).all()
    png = tmp_path / "x.png"
    from skimage.io import imsave

    imsave(png, np.zeros((64, 64), np.uint8), check_contrast=False)
    err = _error(capsys, ["reconstruct", str(png), "--out", str(tmp_path / "out.png"), "--operator",
                          "mri:acceleration=4,mask=poisson-disc", "--sampler", "dps", "--quiet"])
    assert "poisson-disc" in err and "mbir3d" in err
    err = _error(capsys, ["reconstruct", str(ANATOMICAL), "--out", str(tmp_path / "y.nii.gz"), "--operator",
                          "ct:views=8", "--sampler", "mbir3d", "--set", "lam_zz=1", "--quiet"])
    assert "lam_zz" in err and "lam_xy" in err
    err = _error(capsys, ["reconstruct", str(ANATOMICAL), "--out", str(tmp_path / "y.nii.gz"), "--operator",
                          "ct:views=8", "--sampler", "mbir3d", "--set", "lam_xy", "--quiet"])
    assert "--set expects KEY=VALUE" in err
