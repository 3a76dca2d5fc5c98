"""fastMRI HDF5 files (datasets/fastmri_files.py): reading, writing, fastMRI's own reader and evaluator.

The files written here are read back by ``fastmri.data.SliceDataset`` (and its U-Net / VarNet
transforms) and scored by ``python -m fastmri.evaluate`` in a subprocess, so "fastMRI format"
is checked against fastMRI itself rather than against our own reader.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
import torch
from support import fastmri_evaluate

from invsolve.datasets.fastmri_files import (
    ISMRMRD_NAMESPACE,
    fastmri_info,
    ismrmrd_header,
    kspace_to_grid,
    read_fastmri,
    synthesize_fastmri_volume,
    write_fastmri,
    write_synthetic_dataset,
)
from invsolve.datasets.fastmri_submission import evaluate_folder, volume_metrics, write_submission

CHALLENGES = {"multicoil": 4, "singlecoil": None}


def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


@pytest.fixture(scope="module", params=sorted(CHALLENGES))
def dataset(request, tmp_path_factory):
    """Two synthetic volumes of three 32 x 32 slices, per challenge: (challenge, folder, paths)."""
    folder = tmp_path_factory.mktemp(request.param)
    paths = write_synthetic_dataset(folder, n_volumes=2, n_slices=3, size=32, n_coils=CHALLENGES[request.param],
                                    seed=1000)
    return request.param, folder, paths


def test_header_is_ismrmrd_xml_that_fastmri_queries():
    from fastmri.data.mri_data import et_query

    root = ET.fromstring(ismrmrd_header((640, 368, 1), (320, 320, 1), n_coils=15, n_slices=35))
    assert root.tag == f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader"
    assert et_query(root, ["encoding", "encodedSpace", "matrixSize", "x"]) == "640"
    assert et_query(root, ["encoding", "reconSpace", "matrixSize", "y"]) == "320"
    assert et_query(root, ["encoding", "encodingLimits", "kspace_encoding_step_1", "center"]) == "184"
    assert et_query(root, ["encoding", "encodingLimits", "kspace_encoding_step_1", "maximum"]) == "367"
    assert et_query(root, ["acquisitionSystemInformation", "receiverChannels"]) == "15"
    assert et_query(root, ["encoding", "encodedSpace", "fieldOfView_mm", "x"]) == "320.0"


def test_slicedataset_reads_written_files_unchanged(dataset):
    from fastmri.data import SliceDataset

    challenge, folder, paths = dataset
    assert [p.name for p in paths] == ["file1000000.h5", "file1000001.h5"]
    data = SliceDataset(root=folder, challenge=challenge, transform=None)
    assert len(data) == 6
    for i in range(len(data)):
        kspace, mask, target, attrs, fname, slice_num = data[i]
        vol = read_fastmri(folder / fname, slice_num)
        np.testing.assert_array_equal(kspace, vol.kspace[0])
        np.testing.assert_array_equal(target, vol.target[0])
        assert mask is None and kspace.dtype == np.complex64 and target.dtype == np.float32
        assert kspace.shape == ((4, 32, 32) if challenge == "multicoil" else (32, 32))
        assert attrs["encoding_size"] == (32, 32, 1) and attrs["recon_size"] == (32, 32, 1)
        assert (attrs["padding_left"], attrs["padding_right"]) == (0, 32)
        assert attrs["acquisition"] == "CORPD_FBK"
        assert attrs["max"] == pytest.approx(float(read_fastmri(folder / fname).target.max()))
    full = read_fastmri(paths[0])
    assert full.info.attrs["max"] == pytest.approx(float(full.target.max()))
    assert full.info.attrs["norm"] == pytest.approx(float(np.linalg.norm(full.target)), rel=1e-6)
    assert 1e-5 < full.target.max() < 1e-3  # scale=1e-4 mimics real fastMRI magnitudes


def test_target_is_fastmris_reconstruction_of_the_stored_kspace(dataset):
    challenge, _, paths = dataset
    vol = read_fastmri(paths[1])
    coil_images = np.abs(ifft2c(vol.kspace.astype(np.complex128)))
    expected = np.sqrt((coil_images**2).sum(1)) if challenge == "multicoil" else coil_images
    np.testing.assert_allclose(vol.target, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert vol.info.target_key == ("reconstruction_rss" if challenge == "multicoil" else "reconstruction_esc")
    assert vol.info.n_coils == CHALLENGES[challenge] and vol.info.multicoil == (challenge == "multicoil")


def test_fastmri_transforms_run_on_written_files(dataset):
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import create_mask_for_mask_type
    from fastmri.data.transforms import UnetDataTransform, VarNetDataTransform

    challenge, folder, _ = dataset
    mask_func = create_mask_for_mask_type("equispaced", [0.08], [4])
    unet = SliceDataset(folder, challenge, transform=UnetDataTransform(challenge, mask_func=mask_func))[4]
    assert unet.image.shape == (32, 32) and unet.target.shape == (32, 32)
    assert torch.isfinite(unet.image).all() and float(unet.std) > 0
    if challenge == "multicoil":  # VarNet uses the header's padding and recon_size
        varnet = SliceDataset(folder, challenge, transform=VarNetDataTransform(mask_func=mask_func))[4]
        assert varnet.masked_kspace.shape == (4, 32, 32, 2) and varnet.crop_size == (32, 32)
        assert 0.2 < float(varnet.mask.float().mean()) < 0.35


def test_read_selects_slices_lazily_and_in_order(dataset):
    _, _, paths = dataset
    full = read_fastmri(paths[0])
    for sel, idx in ((1, [1]), (-1, [2]), (slice(0, 3, 2), [0, 2]), ([2, 0], [2, 0]), (None, [0, 1, 2])):
        vol = read_fastmri(paths[0], sel)
        assert vol.slices == tuple(idx)
        np.testing.assert_array_equal(vol.kspace, full.kspace[idx])
        np.testing.assert_array_equal(vol.target, full.target[idx])
    with pytest.raises(IndexError, match=r"slices.*3 slices.*-3\.\.2"):
        read_fastmri(paths[0], 3)
    with pytest.raises(IndexError, match="slices"):
        read_fastmri(paths[0], [0, -4])
    with pytest.raises(TypeError, match="slices"):
        read_fastmri(paths[0], 1.0)


def test_write_roundtrip_with_mask_attrs_and_torch_input(tmp_path):
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(2, 3, 8, 6, dtype=torch.complex64, generator=g)
    target = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)
    mask = np.array([0, 1, 1, 1, 0, 1], dtype=bool)
    path = write_fastmri(tmp_path / "file1.h5", kspace, target=target, mask=mask,
                         attrs={"acquisition": "AXT2", "acceleration": 4})
    vol = read_fastmri(path)
    np.testing.assert_array_equal(vol.kspace, kspace.numpy())
    np.testing.assert_array_equal(vol.mask, mask)
    info = fastmri_info(path)
    assert info.kspace_shape == (2, 3, 8, 6) and info.recon_size == (4, 4, 1) and info.encoding_size == (8, 6, 1)
    assert info.attrs["acquisition"] == "AXT2" and info.attrs["acceleration"] == 4 and info.has_mask
    assert [p.name for p in tmp_path.iterdir()] == ["file1.h5"]  # no temporary left behind
    with pytest.raises(FileExistsError, match="file1.h5"):
        write_fastmri(path, kspace)
    write_fastmri(path, kspace[:, 0], overwrite=True)  # single-coil, no target
    assert fastmri_info(path).target_key is None and read_fastmri(path).target is None


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_fastmri(tmp_path / "bad.h5", np.ones((1, 4, 4), np.complex64), attrs={"bad": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="kspace"):
        write_fastmri(tmp_path / "bad.h5", np.ones((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="header"):
        write_fastmri(tmp_path / "bad.h5", np.ones((1, 4, 4), np.complex64), header=b"<not-ismrmrd/>")


def _h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def test_read_errors_are_clear(tmp_path):
    header = ismrmrd_header((4, 4), (4, 4))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_fastmri(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5: not a readable HDF5 file"):
        fastmri_info(tmp_path / "text.h5")
    good = write_fastmri(tmp_path / "good.h5", np.ones((2, 3, 64, 64), np.complex64))
    (tmp_path / "cut.h5").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.h5: not a readable HDF5 file"):
        read_fastmri(tmp_path / "cut.h5")
    with pytest.raises(ValueError, match=r"no 'kspace'.*\['ismrmrd_header'\]"):
        read_fastmri(_h5(tmp_path / "a.h5", ismrmrd_header=header))
    with pytest.raises(ValueError, match=r"no 'ismrmrd_header'.*\['kspace'\]"):
        read_fastmri(_h5(tmp_path / "b.h5", kspace=np.ones((1, 4, 4), np.complex64)))
    with pytest.raises(ValueError, match="complex"):
        read_fastmri(_h5(tmp_path / "c.h5", kspace=np.ones((1, 4, 4)), ismrmrd_header=header))
    with pytest.raises(ValueError, match="slices, H, W"):
        read_fastmri(_h5(tmp_path / "d.h5", kspace=np.ones((4, 4), np.complex64), ismrmrd_header=header))
    with pytest.raises(ValueError, match="unparsable ISMRMRD header"):
        read_fastmri(_h5(tmp_path / "e.h5", kspace=np.ones((1, 4, 4), np.complex64), ismrmrd_header=b"<x"))


def test_synthesis_is_seeded_and_noise_is_relative():
    images = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    clean = synthesize_fastmri_volume(images, n_coils=4, noise_level=0.0, generator=torch.Generator(), scale=2.0)
    np.testing.assert_allclose(clean.target.numpy(), 2 * images.numpy(), rtol=1e-5, atol=1e-6)  # sum |S_c|^2 = 1
    assert clean.coil_maps.shape == (4, 16, 16) and clean.noise_std == 0
    a, b = (synthesize_fastmri_volume(images, n_coils=4, noise_level=0.1, generator=torch.Generator().manual_seed(5),
                                      scale=2.0) for _ in range(2))
    assert torch.equal(a.kspace, b.kspace)
    noise = (a.kspace - clean.kspace).abs().square().mean().sqrt()
    rms = clean.kspace.abs().square().mean().sqrt()
    assert float(noise / rms) == pytest.approx(0.1, rel=0.05)
    assert a.noise_std == pytest.approx(0.1 * float(rms), rel=1e-5)
    single = synthesize_fastmri_volume(images[:, None], n_coils=None, noise_level=0.0, generator=torch.Generator())
    assert single.kspace.shape == (2, 16, 16) and single.coil_maps is None
    with pytest.raises(TypeError, match="generator"):
        synthesize_fastmri_volume(images, n_coils=4, noise_level=0.0, generator=0)


def test_write_synthetic_dataset_refuses_existing_files(dataset):
    _, folder, _ = dataset
    with pytest.raises(FileExistsError, match="file1000000.h5"):
        write_synthetic_dataset(folder, n_volumes=1, n_slices=1, size=32, n_coils=2, seed=1000)


def test_submission_scored_like_fastmri_evaluate(dataset, tmp_path):
    challenge, folder, paths = dataset
    rng = np.random.default_rng(0)
    for path in paths:
        target = read_fastmri(path).target
        recon = target + 0.05 * target.max() * rng.standard_normal(target.shape).astype(np.float32)
        write_submission(tmp_path, path.name, recon)
    printed = fastmri_evaluate(folder, tmp_path, challenge)
    ours = evaluate_folder(folder, tmp_path, challenge)
    assert set(printed) == {"MSE", "NMSE", "PSNR", "SSIM"} and set(ours) == {p.name for p in paths} | {"mean", "std"}
    for name, (mean, two_std) in printed.items():
        assert f"{ours['mean'][name]:.4g}" == mean
        assert f"{2 * ours['std'][name]:.4g}" == two_std
    assert 20 < ours["mean"]["PSNR"] < 40 and 0 < ours["mean"]["NMSE"] < 0.1
    with pytest.raises(FileExistsError):
        write_submission(tmp_path, paths[0].name, np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="name"):
        write_submission(tmp_path, "../x.h5", np.zeros((3, 32, 32), np.float32))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_volume_metrics_crop_like_fastmri():
    rng = np.random.default_rng(1)
    target = rng.random((2, 40, 32)).astype(np.float32)
    recon = target.copy()
    recon[:, :4] = 0  # outside the central 32 x 32 rows: cropped away
    m = volume_metrics(target, recon)
    assert m["NMSE"] == 0 and m["SSIM"] == pytest.approx(1.0) and np.isinf(m["PSNR"])
    with pytest.raises(ValueError, match="centre-crop"):
        volume_metrics(target, recon[:, :20])


def test_kspace_to_grid_identity_and_errors():
    k = fft2c(np.random.default_rng(0).standard_normal((2, 3, 16, 12)) + 0j)
    np.testing.assert_allclose(kspace_to_grid(k, (16, 12), (16, 12)), k, atol=1e-5)
    with pytest.raises(ValueError, match="out_size"):
        kspace_to_grid(k, (12, 12), (14, 12))
    with pytest.raises(ValueError, match="recon_size"):
        kspace_to_grid(k, (20, 12), (8, 8))
    with pytest.raises(ValueError, match="complex"):
        kspace_to_grid(k.real, (16, 12), (8, 8))


def test_kspace_to_grid_samples_band_limited_images_on_the_coarse_grid():
    def image(n_rows, n_cols):  # a smooth, band-limited periodic image on the centred grid (t = (j - n//2) / n)
        ty = (np.arange(n_rows) - n_rows // 2)[:, None] / n_rows
        tx = (np.arange(n_cols) - n_cols // 2)[None, :] / n_cols
        return 1 + np.cos(2 * np.pi * (3 * ty + 2 * tx)) + 0.5j * np.sin(2 * np.pi * (5 * tx - ty))

    # 64 x 48 acquired (readout oversampled 2x), object FOV 32 x 48 in the middle, prior grid 16 x 24.
    big = np.zeros((64, 48), complex)
    big[16:48] = image(32, 48)
    out = ifft2c(kspace_to_grid(fft2c(big), (32, 48, 1), (16, 24)))
    np.testing.assert_allclose(out, image(16, 24), atol=1e-5)


def test_rss_of_grid_converted_volume_approximates_the_downsampled_target(dataset):
    challenge, _, paths = dataset
    vol = read_fastmri(paths[0])
    coil = ifft2c(kspace_to_grid(vol.kspace, vol.info.recon_size, (16, 16)))
    rss = np.sqrt((np.abs(coil) ** 2).sum(1)) if challenge == "multicoil" else np.abs(coil)
    low = np.abs(ifft2c(kspace_to_grid(fft2c(vol.target.astype(np.complex64)), (32, 32), (16, 16))))
    assert np.linalg.norm(rss - low) / np.linalg.norm(low) < 0.05
