"""NIfTI I/O on nibabel's bundled real scans: exact round trips, scaling without clipping, errors, atomicity."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.testing import data_path

from invsolve.datasets import NiftiVolume, iter_nifti_volumes, read_nifti, slice_axis, write_nifti
from invsolve.datasets import nifti

ANAT = os.path.join(data_path, "anatomical.nii")  # 33 x 41 x 25, big-endian int16, sform = qform = 2
EPI = os.path.join(data_path, "example4d.nii.gz")  # 128 x 96 x 24 x 2, int16, LAS, 2 extensions


def _decompressed(path):
    raw = open(path, "rb").read()
    return gzip.decompress(raw) if str(path).endswith(".gz") else raw


def _save(tmp_path, name, data, affine=np.eye(4), dtype=None):
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    path = tmp_path / name
    nib.save(img, path)
    return path


def _fields_differing(h1, h2):
    return {k for k in h1.keys() if h1[k].tobytes() != h2[k].tobytes()}


def test_read_keeps_voxel_order_and_metadata():
    vol = read_nifti(ANAT)
    img = nib.load(ANAT)
    assert vol.shape == (33, 41, 25) and vol.data.dtype == np.float32 and vol.volume_index is None
    assert np.array_equal(vol.data, img.get_fdata()) and np.array_equal(vol.affine, img.affine)
    assert vol.zooms == (2.0, 2.0, 2.0) and vol.axcodes == ("L", "A", "S")
    assert vol.on_disk_dtype == np.dtype(">i2")
    assert nifti.n_volumes(ANAT) == 1 and nifti.n_volumes(EPI) == 2


def test_anatomical_round_trip_is_byte_identical(tmp_path):
    vol = read_nifti(ANAT)
    out = write_nifti(tmp_path / "anat.nii", vol.data, like=vol)
    assert open(out, "rb").read() == open(ANAT, "rb").read()  # header, big-endian int16 voxels, all of it
    assert nib.load(out).header.endianness == ">"


def test_4d_series_iterated_and_written_back_is_identical(tmp_path):
    vols = list(iter_nifti_volumes(EPI))
    assert [v.volume_index for v in vols] == [0, 1]
    series = np.stack([v.data for v in vols], axis=-1)
    out = write_nifti(tmp_path / "epi.nii.gz", series, like=vols[0])
    assert open(out, "rb").read(2) == b"\x1f\x8b"  # gzip, chosen from the .nii.gz name
    assert _decompressed(out) == _decompressed(EPI)  # header, both extensions and voxels
    img, ref = nib.load(out), nib.load(EPI)
    assert np.array_equal(np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj))
    assert img.header.binaryblock == ref.header.binaryblock and np.array_equal(img.affine, ref.affine)


def test_volume_of_4d_file_writes_3d_with_same_spatial_header(tmp_path):
    vol = read_nifti(EPI, volume=1)
    ref = nib.load(EPI)
    assert vol.volume_index == 1 and vol.shape == (128, 96, 24) and vol.axcodes == ("L", "A", "S")
    assert np.array_equal(vol.data, np.asanyarray(ref.dataobj)[..., 1])
    out = write_nifti(tmp_path / "vol1.nii.gz", vol.data, like=vol)
    img = nib.load(out)
    assert img.shape == (128, 96, 24)
    assert np.array_equal(np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj)[..., 1])
    assert np.array_equal(img.affine, ref.affine)
    stored = read_nifti(out).header  # headers as stored (nib.load resets scl_slope/inter and vox_offset)
    assert _fields_differing(stored, vol.header) == {"dim"}  # pixdim, codes, quaternion, descrip, scl ... kept
    assert list(img.header["dim"]) == [3, 128, 96, 24, 1, 1, 1, 1]
    assert img.header.extensions == ref.header.extensions


def test_float_outputs_store_values_exactly(tmp_path):
    vol = read_nifti(ANAT)
    values = np.random.default_rng(0).normal(size=vol.shape) * 1e4
    for dtype, expected in [("float32", values.astype(np.float32)), (np.float64, values)]:
        out = write_nifti(tmp_path / f"f_{np.dtype(dtype).name}.nii", values, like=vol, dtype=dtype)
        back = read_nifti(out)
        assert back.on_disk_dtype == np.dtype(dtype).newbyteorder(">")  # file byte order kept
        assert np.array_equal(back.data, expected) and np.array_equal(back.affine, vol.affine)
        assert _fields_differing(back.header, vol.header) == {"datatype", "bitpix"}


def test_int16_output_quantises_within_half_a_step_and_never_clips(tmp_path):
    vol = read_nifti(EPI, volume=0)
    values = vol.data / 7.3
    values[0, 0, 0], values[1, 0, 0] = 1e6, -3e5  # far outside int16
    out = write_nifti(tmp_path / "q.nii.gz", torch.from_numpy(values), like=vol, dtype="input")
    back = read_nifti(out)
    slope, inter = back.header.get_slope_inter()
    assert back.on_disk_dtype == np.int16 and slope > 0
    err = np.abs(back.data - values)
    assert err.max() <= slope / 2 * (1 + 1e-6)  # one rounding to the nearest quantisation step
    assert abs(back.data[0, 0, 0] - 1e6) <= slope / 2 and abs(back.data[1, 0, 0] + 3e5) <= slope / 2


def test_integer_data_are_stored_unscaled_and_like_scaling_is_reused(tmp_path):
    vol = read_nifti(ANAT)
    shifted = vol.data - vol.data.min()  # integers in [0, 65535]: no scaling needed for uint16
    out = write_nifti(tmp_path / "shift.nii", shifted, like=vol, dtype="uint16")
    back = read_nifti(out)
    assert back.on_disk_dtype == np.dtype(">u2") and np.array_equal(back.data, shifted)
    assert back.header.get_slope_inter() == (1.0, 0.0)
    raw = np.arange(-300, 300, dtype=np.int16).reshape(6, 10, 10)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.25, 10.0)
    nib.save(img, tmp_path / "scaled.nii")
    scaled = read_nifti(tmp_path / "scaled.nii")
    assert scaled.data.dtype == np.float64 and np.array_equal(scaled.data, raw * 0.25 + 10.0)
    again = write_nifti(tmp_path / "again.nii", scaled.data, like=scaled)
    assert open(again, "rb").read() == open(tmp_path / "scaled.nii", "rb").read()


def test_trailing_singleton_axis_counts_as_3d_and_is_kept(tmp_path):
    path = _save(tmp_path, "single.nii", np.arange(60, dtype=np.uint8).reshape(3, 4, 5, 1))
    vol = read_nifti(path)
    assert vol.shape == (3, 4, 5) and nifti.n_volumes(path) == 1 and vol.data.dtype == np.float32
    out = write_nifti(tmp_path / "single_out.nii", vol.data, like=vol)
    assert open(out, "rb").read() == open(path, "rb").read()


def test_nifti2_series_round_trip(tmp_path):
    data = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    nib.save(nib.Nifti2Image(data, np.diag([2.0, 3.0, 4.0, 1.0])), tmp_path / "n2.nii")
    vols = list(iter_nifti_volumes(tmp_path / "n2.nii"))
    assert isinstance(vols[0].header, nib.Nifti2Header) and np.array_equal(vols[2].data, data[..., 2])
    out = write_nifti(tmp_path / "n2_out.nii", np.stack([v.data for v in vols], -1), like=vols[0])
    assert open(out, "rb").read() == open(tmp_path / "n2.nii", "rb").read()


def test_oblique_affine_and_distinct_codes_preserved(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    sform = np.array([[c, -s, 0, -20.5], [s, c, 0, 13.25], [0, 0, 1.5, -7.0], [0, 0, 0, 1]])
    qform = sform.copy()
    qform[:3, 3] += 0.125
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.int16), None)
    img.header.set_sform(sform, code=4)
    img.header.set_qform(qform, code=1)
    img.header["descrip"] = b"oblique test"
    img.header["xyzt_units"] = 10
    nib.save(img, tmp_path / "oblique.nii.gz")
    vol = read_nifti(tmp_path / "oblique.nii.gz")
    values = np.random.default_rng(1).uniform(0, 1, vol.shape)
    out = write_nifti(tmp_path / "oblique_out.nii.gz", values, like=vol, dtype="float32")
    back = nib.load(out)
    assert np.array_equal(back.affine, vol.affine)
    assert np.array_equal(back.affine, nib.load(tmp_path / "oblique.nii.gz").affine)
    assert np.array_equal(back.header.get_qform(), vol.header.get_qform())
    assert (int(back.header["sform_code"]), int(back.header["qform_code"])) == (4, 1)
    assert _fields_differing(read_nifti(out).header, vol.header) == {"datatype", "bitpix"}  # as stored


def test_slice_axis_follows_the_affine():
    ras = NiftiVolume(np.zeros((4, 5, 6)), np.eye(4), nib.Nifti1Header())
    assert [slice_axis(ras, p) for p in ("sagittal", "coronal", "axial")] == [0, 1, 2]
    las = read_nifti(EPI, volume=0)
    assert las.axcodes == ("L", "A", "S") and slice_axis(las, "axial") == 2 and slice_axis(las) == 2
    permuted = np.array([[0, 0, -1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # voxel axis 0 runs S
    vol = NiftiVolume(np.zeros((4, 5, 6)), permuted, nib.Nifti1Header())
    assert vol.axcodes == ("S", "A", "L")
    assert (slice_axis(vol, "axial"), slice_axis(vol, "coronal"), slice_axis(vol, "sagittal")) == (0, 1, 2)
    with pytest.raises(ValueError, match="plane must be one of"):
        slice_axis(vol, "transverse")


def test_slices_round_trip_exactly():
    volume = np.random.default_rng(2).normal(size=(4, 5, 6)).astype(np.float32)
    for axis in range(3):
        slices = nifti.to_slices(volume, axis)
        assert slices.dtype == torch.float32 and slices.shape[0] == volume.shape[axis] and slices.shape[1] == 1
        assert np.array_equal(nifti.from_slices(slices, axis, volume.shape), volume)
        assert np.array_equal(nifti.from_slices(slices[:, 0].numpy(), axis, volume.shape), volume)
    with pytest.raises(ValueError, match="do not form a volume of shape"):
        nifti.from_slices(nifti.to_slices(volume, 0), 1, volume.shape)
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2"):
        nifti.to_slices(volume, 3)


def test_intensity_window_and_normalise_without_clipping():
    data = read_nifti(ANAT).data
    lo, hi = nifti.intensity_window(data)
    assert lo < hi
    x = nifti.normalise(data, (lo, hi))
    float32 = 1e-5  # normalise works in the data's float32: a few units in the last place of values near 1
    assert x.min() < 0 or x.max() > 1 or np.percentile(x, 99.5) == pytest.approx(1.0, abs=float32)
    assert np.percentile(x, 0.5) == pytest.approx(0.0, abs=float32)
    assert np.percentile(x, 99.5) == pytest.approx(1.0, abs=float32)
    np.testing.assert_allclose(nifti.denormalise(x, (lo, hi)), data, rtol=0, atol=1e-6 * (hi - lo))  # rounding only
    assert nifti.denormalise(np.array([1.5]), (0.0, 2.0))[0] == 3.0  # outside [0, 1] kept, not clipped
    with pytest.raises(ValueError, match="no intensity spread"):
        nifti.intensity_window(np.ones((3, 3, 3)))


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found: .*missing.nii"):
        read_nifti(tmp_path / "missing.nii")
    with pytest.raises(ValueError, match=r"must end in \.nii or \.nii\.gz, got .*scan\.img"):
        read_nifti(tmp_path / "scan.img")
    (tmp_path / "noise.nii").write_bytes(np.random.default_rng(3).bytes(2000))
    with pytest.raises(ValueError, match="noise.nii is not a readable NIfTI file"):
        read_nifti(tmp_path / "noise.nii")
    (tmp_path / "cut.nii.gz").write_bytes(open(EPI, "rb").read()[:200_000])
    with pytest.raises(ValueError, match="cut.nii.gz is not a readable NIfTI file"):
        read_nifti(tmp_path / "cut.nii.gz", volume=1)
    (tmp_path / "cut.nii").write_bytes(open(ANAT, "rb").read()[:20_000])
    with pytest.raises(ValueError, match="cut.nii is not a readable NIfTI file"):
        read_nifti(tmp_path / "cut.nii")
    with pytest.raises(ValueError, match=r"2D data of shape \(4, 5\); only 3D volumes and 4D series"):
        read_nifti(_save(tmp_path, "flat.nii", np.zeros((4, 5), np.float32)))
    with pytest.raises(ValueError, match=r"5D data of shape \(2, 3, 4, 2, 3\)"):
        iter_nifti_volumes(_save(tmp_path, "five.nii", np.zeros((2, 3, 4, 2, 3), np.float32)))
    with pytest.raises(ValueError, match="is 4D with 2 volumes; pass volume=k .* or use iter_nifti_volumes"):
        read_nifti(EPI)
    with pytest.raises(IndexError, match=r"volume must be an integer in \[0, 1\] .*got 2"):
        read_nifti(EPI, volume=2)
    with pytest.raises(IndexError, match="volume must be None"):
        read_nifti(ANAT, volume=1)


def test_write_errors(tmp_path):
    vol = read_nifti(ANAT)
    with pytest.raises(ValueError, match=r"must end in \.nii or \.nii\.gz"):
        write_nifti(tmp_path / "out.nii.zip", vol.data, like=vol)
    write_nifti(tmp_path / "out.nii", vol.data, like=vol)
    with pytest.raises(FileExistsError, match="out.nii already exists; pass overwrite=True"):
        write_nifti(tmp_path / "out.nii", vol.data, like=vol)
    write_nifti(tmp_path / "out.nii", vol.data - 5, like=vol, overwrite=True)
    assert np.array_equal(read_nifti(tmp_path / "out.nii").data, vol.data - 5)
    with pytest.raises(ValueError, match=r"like's shape \(33, 41, 25\) .*got \(33, 41, 24\)"):
        write_nifti(tmp_path / "s.nii", vol.data[..., :24], like=vol)
    nan = vol.data.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN/Inf value.*int16 cannot store"):
        write_nifti(tmp_path / "n.nii", nan, like=vol, dtype="int16")
    write_nifti(tmp_path / "n.nii", nan, like=vol, dtype="float32")  # floats store NaN
    assert np.isnan(read_nifti(tmp_path / "n.nii").data[0, 0, 0])
    for bad in ("int17", "complex64", "int64"):
        with pytest.raises(ValueError, match="dtype must be 'input' or one of 'int8'"):
            write_nifti(tmp_path / "d.nii", vol.data, like=vol, dtype=bad)
    with pytest.raises(ValueError, match="like.affine differs from like.header"):
        write_nifti(tmp_path / "a.nii", vol.data, like=NiftiVolume(vol.data, np.eye(4), vol.header))
    with pytest.raises(ValueError, match="beyond the float32 range"):
        write_nifti(tmp_path / "big.nii", np.full(vol.shape, 1e39), like=vol, dtype="float32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.nii", "out.nii"]  # no partial or temporary files


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    vol = read_nifti(ANAT)
    target = tmp_path / "out.nii.gz"

    def crash(data, fileobj, *args, **kwargs):
        fileobj.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(nifti, "array_to_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_nifti(target, vol.data, like=vol)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        write_nifti(target, vol.data, like=vol, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"] and target.read_bytes() == b"old"
