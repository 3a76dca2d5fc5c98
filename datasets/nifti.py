"""NIfTI volumes read and written through nibabel so that clinical pipelines can trust them.

Conventions
-----------
* **Voxel order is kept.** ``data[i, j, k]`` is the voxel stored at ``(i, j, k)`` in the file; nothing is
  reoriented or resampled. ``affine`` maps those indices to scanner millimetres (nibabel's best affine:
  the sform if its code is set, else the qform). Use :func:`slice_axis` to find the axial/coronal/
  sagittal axis instead of assuming one.
* **Files:** ``.nii`` and ``.nii.gz`` (NIfTI-1 or NIfTI-2, single file) holding real integer or float
  voxels; 3D volumes and 4D series whose 4th axis is volumes/time (trailing singleton axes after the
  third are ignored, so ``(x, y, z, 1)`` is 3D). Anything else raises ``ValueError``; a missing file
  ``FileNotFoundError``; a corrupt or truncated file ``ValueError("... is not a readable NIfTI file")``.
* **Values:** ``NiftiVolume.data`` holds ``stored * scl_slope + scl_inter``: float32 when that is exact
  (int8/uint8/int16/uint16/float32 on disk with no scaling), float64 otherwise.
* **Header:** ``NiftiVolume.header`` is a copy of the header exactly as stored (``dim`` still describes
  the file, e.g. 4D; ``scl_slope``, ``scl_inter``, ``vox_offset`` keep their stored values; nibabel's
  load-time ``check_fix`` is not applied).
* **Writing** (:func:`write_nifti`) stores a copy of ``like.header`` in which only ``dim`` (the data
  shape), ``datatype``/``bitpix`` and, when needed, ``scl_slope``/``scl_inter`` change. The sform,
  qform (codes and quaternion), pixdim, units, ``descrip``, intent, ``cal_min``/``cal_max`` (kept, not
  recomputed), extensions, ``vox_offset`` and byte order are kept bit for bit, so a file read and written
  back with ``dtype="input"`` has the same bytes (a ``.nii.gz`` the same decompressed bytes).
* **Integer output never clips.** Values are stored exactly when they are integers under ``like``'s
  scaling (or under no scaling) and fit the type; otherwise nibabel fits ``scl_slope``/``scl_inter`` to
  the data range and values round to the nearest step (error <= slope / 2). NaN/Inf cannot be stored in
  an integer type (``ValueError``). Float output stores values exactly up to float32 rounding. Output
  types: (u)int8/16/32, float32/64 (64-bit integers are read, as float64, but not written).
* **2D priors:** :func:`to_slices` / :func:`from_slices` (exact inverses) cut a volume along an axis;
  :func:`intensity_window`, :func:`normalise`, :func:`denormalise` map a percentile window to [0, 1] and
  back without clipping (values beyond the window land outside [0, 1]).
* **Atomic:** output goes to a temporary file in the target folder, then one rename. ``nibabel.save`` is
  not used: it infers the format from the file name (the temporary name ends in ``.tmp.gz`` /
  ``.tmp.nii``) and re-derives the header (scaling, ``vox_offset``) from an image object.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.arraywriters import WriterError, get_slope_inter, make_array_writer
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.orientations import io_orientation
from nibabel.spatialimages import HeaderDataError
from nibabel.volumeutils import array_from_file, array_to_file

from invsolve._atomic import atomic_path

_SUFFIXES = (".nii", ".nii.gz")
_FLOAT32_EXACT = {"int8", "uint8", "int16", "uint16", "float32"}
_WRITABLE = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")
_PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}  # world axis (RAS index) each plane's normal follows
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)


@dataclasses.dataclass(frozen=True, eq=False)
class NiftiVolume:
    """One 3D volume of a NIfTI file, in the file's voxel order (see the module docstring)."""

    data: np.ndarray  # (X, Y, Z) float32 or float64, scaling applied
    affine: np.ndarray  # (4, 4) voxel -> world (mm)
    header: nib.Nifti1Header  # copy of the on-disk header (Nifti2Header for NIfTI-2 files)
    path: Path | None = None
    volume_index: int | None = None  # index along the 4th axis of a 4D file, None for a 3D file

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in self.header.get_zooms()[:3])  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return nib.aff2axcodes(self.affine)

    @property
    def on_disk_dtype(self) -> np.dtype:
        return self.header.get_data_dtype()


def _nifti_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.name.endswith(_SUFFIXES):
        raise ValueError(f"path must end in .nii or .nii.gz, got {str(path)!r}")
    return path


_NIBABEL_LOG = logging.getLogger("nibabel.global")


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Reading errors as one ``ValueError`` naming the file; nibabel's own header log lines are held back meanwhile
    (a damaged header is reported in that error, not as extra lines on stderr)."""
    level = _NIBABEL_LOG.level
    _NIBABEL_LOG.setLevel(logging.CRITICAL + 1)
    try:
        yield
    except PermissionError:
        raise
    except _READ_ERRORS as exc:
        raise ValueError(f"{path} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    finally:
        _NIBABEL_LOG.setLevel(level)


def _inspect(path: str | Path) -> tuple[Path, nib.Nifti1Header, tuple[int, ...]]:
    """Header as stored and the effective shape (3D or 4D) of a NIfTI file; raises for what is unsupported."""
    path = _nifti_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    with _readable(path):
        header_class = type(nib.load(path).header)  # sniffs NIfTI-1 / NIfTI-2 and validates the header
        with ImageOpener(str(path)) as f:
            header = header_class.from_fileobj(f, check=False)  # exact stored bytes, no check_fix
        _slope_inter(header)
    dtype, full = header.get_data_dtype(), tuple(int(d) for d in header.get_data_shape())
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise ValueError(f"{path} stores {dtype} voxels; only real integer and float data are supported")
    shape = full
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{path} holds {len(shape)}D data of shape {full}; only 3D volumes and 4D series "
            "(4th axis = volumes) are supported"
        )
    _check_stored_size(path, header, shape)
    return path, header, shape


def _check_stored_size(path: Path, header: nib.Nifti1Header, shape: tuple[int, ...]) -> None:
    """Refuse a header that claims more voxel data than the file holds, before anything is allocated (a plain
    file's size; a gzip file's recorded uncompressed size, modulo 2**32 as gzip stores it)."""
    needed = int(header.get_data_offset()) + math.prod(shape) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        with open(path, "rb") as f:
            f.seek(-4, 2)
            stored = int.from_bytes(f.read(4), "little")
        short = needed >= 2**32 or stored < needed  # gzip's size field cannot vouch for more than 4 GiB
    else:
        stored = path.stat().st_size
        short = stored < needed
    if short:
        raise ValueError(f"{path} is not a readable NIfTI file: the header claims a {'x'.join(map(str, shape))} "
                         f"volume ({needed:,} bytes) but the file holds {stored:,} bytes; damaged or truncated")


def _slope_inter(header: nib.Nifti1Header) -> tuple[float, float]:
    slope, inter = header.get_slope_inter()
    return (1.0, 0.0) if slope is None else (float(slope), float(inter))


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    if (slope, inter) == (1.0, 0.0):
        return raw.astype(np.float32 if raw.dtype.name in _FLOAT32_EXACT else np.float64)
    return raw.astype(np.float64) * slope + inter


def _read_volume(f, header: nib.Nifti1Header, shape: tuple[int, ...], k: int) -> np.ndarray:
    dtype = header.get_data_dtype()
    offset = int(header.get_data_offset()) + k * math.prod(shape[:3]) * dtype.itemsize
    raw = array_from_file(shape[:3], dtype, f, offset=offset, order="F", mmap=False)
    return _scaled(raw, *_slope_inter(header))


def n_volumes(path: str | Path) -> int:
    """Number of 3D volumes in a NIfTI file: 1 for a 3D file, N for a 4D series."""
    shape = _inspect(path)[2]
    return shape[3] if len(shape) == 4 else 1


def read_nifti(path: str | Path, *, volume: int | None = None) -> NiftiVolume:
    """Read a 3D file, or volume ``volume`` of a 4D series, keeping the file's voxel order."""
    path, header, shape = _inspect(path)
    index = None
    if len(shape) == 4:
        n = shape[3]
        if volume is None:
            raise ValueError(
                f"{path} is 4D with {n} volumes; pass volume=k (0 <= k < {n}) or use iter_nifti_volumes"
            )
        if not isinstance(volume, (int, np.integer)) or isinstance(volume, bool) or not 0 <= volume < n:
            raise IndexError(f"volume must be an integer in [0, {n - 1}] for {path} ({n} volumes), got {volume!r}")
        index = int(volume)
    elif volume not in (None, 0):
        raise IndexError(f"volume must be None (or 0) for the 3D file {path}, got {volume!r}")
    with _readable(path), ImageOpener(str(path)) as f:
        data = _read_volume(f, header, shape, index or 0)
    return NiftiVolume(data, header.get_best_affine(), copy.deepcopy(header), path, index)


def iter_nifti_volumes(path: str | Path) -> Iterator[NiftiVolume]:
    """Yield the volumes of a 4D series in order (a 3D file yields itself once), reading one at a time."""
    path, header, shape = _inspect(path)  # errors now, not at the first next()
    four_d = len(shape) == 4

    def volumes() -> Iterator[NiftiVolume]:
        with ImageOpener(str(path)) as f:
            for k in range(shape[3] if four_d else 1):
                with _readable(path):
                    data = _read_volume(f, header, shape, k)
                yield NiftiVolume(data, header.get_best_affine(), copy.deepcopy(header), path, k if four_d else None)

    return volumes()


def _as_float64(data: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"data must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _output_shape(shape: tuple[int, ...], like: NiftiVolume) -> tuple[int, ...]:
    if len(shape) not in (3, 4) or shape[:3] != like.shape:
        raise ValueError(
            f"data must have like's shape {like.shape} or {like.shape + ('volumes',)} for a 4D series, got {shape}"
        )
    stored = tuple(int(d) for d in like.header.get_data_shape())
    if stored[: len(shape)] == shape and all(d == 1 for d in stored[len(shape) :]):
        return stored  # keep like's trailing singleton axes
    return shape


def _output_dtype(dtype: str | np.dtype | type, like: NiftiVolume, header: nib.Nifti1Header) -> np.dtype:
    choices = f"'input' or one of {', '.join(repr(n) for n in _WRITABLE)} (str or numpy dtype)"
    try:
        wanted = like.on_disk_dtype if isinstance(dtype, str) and dtype == "input" else np.dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"dtype must be {choices}, got {dtype!r}") from None
    if wanted.name not in _WRITABLE:
        raise ValueError(f"dtype must be {choices}, got {dtype!r} ({wanted})")
    header.set_data_dtype(wanted)
    return header.get_data_dtype()  # in the header's byte order


def _exact_integers(values: np.ndarray, out: np.ndarray, slope: float, inter: float) -> np.ndarray | None:
    """Stored integers that read back to exactly ``values`` under (slope, inter), or None."""
    info = np.iinfo(out)
    raw = np.rint((values - inter) / slope)
    if raw.size and (raw.min() < info.min or raw.max() > info.max):
        return None
    stored = raw.astype(out)
    return stored if np.array_equal(_scaled(stored, slope, inter), values) else None


def _fitted_integers(values: np.ndarray, out: np.dtype) -> tuple[np.ndarray, float, float]:
    """Quantise with the slope/intercept nibabel fits to the data range (as float32, like the header)."""
    try:
        slope, inter = (float(np.float32(v)) for v in get_slope_inter(make_array_writer(values, out, True, True)))
    except WriterError as exc:
        raise ValueError(f"data cannot be scaled into {out.name} ({exc}); choose a float dtype") from exc
    raw = np.rint((values - inter) / slope) if math.isfinite(slope) and slope != 0 else None
    info = np.iinfo(out)
    if raw is None or not np.isfinite(inter) or (raw.size and (raw.min() < info.min or raw.max() > info.max)):
        raise ValueError(f"data range cannot be stored in {out.name} by scaling; choose a float dtype")
    return raw.astype(out), slope, inter


def _encode(values: np.ndarray, out: np.dtype, like_scl: tuple[float, float]) -> tuple[np.ndarray, tuple | None]:
    """Stored array and the (scl_slope, scl_inter) to write, None meaning "keep like's stored fields"."""
    if out.kind == "f":
        with np.errstate(over="ignore"):
            stored = values.astype(out)
        if np.any(np.isinf(stored) & np.isfinite(values)):
            raise ValueError(f"data has finite values beyond the {out.name} range; use dtype='float64'")
        return stored, (None if like_scl == (1.0, 0.0) else (1.0, 0.0))
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"data contains {bad} NaN/Inf value(s), which {out.name} cannot store; use a float dtype")
    for scl in dict.fromkeys([like_scl, (1.0, 0.0)]):
        stored = _exact_integers(values, out, *scl)
        if stored is not None:
            return stored, (None if scl == like_scl else scl)
    stored, slope, inter = _fitted_integers(values, out)
    return stored, (slope, inter)


def write_nifti(
    path: str | Path,
    data: np.ndarray | torch.Tensor,
    *,
    like: NiftiVolume,
    dtype: str | np.dtype | type = "input",
    overwrite: bool = False,
) -> Path:
    """Write ``data`` (like's 3D shape, or that plus a 4th volumes axis) with ``like``'s header and geometry.

    ``dtype="input"`` keeps like's on-disk type; integer types scale rather than clip (module docstring).
    The geometry written is ``like.header``'s (sform/qform, all of pixdim, so a 4D series written with a
    3D ``like`` keeps like's ``pixdim[4]``); ``like.affine`` must be that header's best affine.
    """
    path = _nifti_path(path)
    if not isinstance(like, NiftiVolume):
        raise TypeError(f"like must be a NiftiVolume (from read_nifti), got {type(like).__name__}")
    if not np.array_equal(like.header.get_best_affine(), like.affine):
        raise ValueError("like.affine differs from like.header's sform/qform; the header's geometry is what is written")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    values = _as_float64(data)
    header = copy.deepcopy(like.header)
    out = _output_dtype(dtype, like, header)
    header.set_data_shape(_output_shape(tuple(values.shape), like))
    header["pixdim"] = like.header["pixdim"]  # nibabel sets pixdim past the new ndim to 1; keep like's
    stored, scl = _encode(values, out, _slope_inter(like.header))
    if scl is not None:
        header["scl_slope"], header["scl_inter"] = scl
    with atomic_path(path) as tmp, ImageOpener(str(tmp), "wb") as f:  # .tmp.gz -> gzip, .tmp.nii -> plain
        header.write_to(f)
        array_to_file(stored, f, out, offset=int(header.get_data_offset()), order="F", nan2zero=False)
    return path


def slice_axis(volume: NiftiVolume, plane: str = "axial") -> int:
    """Voxel axis closest to the normal of ``plane``: S-I for axial, A-P for coronal, L-R for sagittal."""
    if plane not in _PLANES:
        raise ValueError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    axes = np.flatnonzero(io_orientation(volume.affine)[:, 0] == _PLANES[plane])
    if axes.size != 1:
        raise ValueError(f"cannot find the {plane} axis: the affine is degenerate\n{volume.affine}")
    return int(axes[0])


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2) or isinstance(axis, bool):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    return int(axis)


def to_slices(data: np.ndarray, axis: int) -> torch.Tensor:
    """3D volume -> float32 tensor (N, 1, H, W) of the 2D slices along ``axis`` (for 2D priors)."""
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ValueError(f"data must be a 3D volume, got shape {arr.shape}")
    slices = np.moveaxis(arr, _check_axis(axis), 0)
    return torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).unsqueeze(1)


def from_slices(slices: np.ndarray | torch.Tensor, axis: int, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`to_slices`: (N, 1, H, W) or (N, H, W) slices -> the volume of ``shape``."""
    arr = slices.detach().cpu().numpy() if isinstance(slices, torch.Tensor) else np.asarray(slices)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    volume = np.moveaxis(arr, 0, _check_axis(axis)) if arr.ndim == 3 else arr
    if volume.shape != tuple(shape):
        raise ValueError(
            f"slices of shape {tuple(slices.shape)} along axis {axis} do not form a volume of shape {tuple(shape)}"
        )
    return np.ascontiguousarray(volume)


def intensity_window(data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Robust intensity range ``(lo, hi)``: the given percentiles of the finite values."""
    arr = np.asarray(data, dtype=np.float64)
    lo, hi = np.percentile(arr[np.isfinite(arr)], percentiles) if np.isfinite(arr).any() else (np.nan, np.nan)
    if not hi > lo:
        raise ValueError(f"data has no intensity spread at percentiles {percentiles} (lo={lo}, hi={hi})")
    return float(lo), float(hi)


def normalise(data, window: tuple[float, float]):
    """Map ``window`` to [0, 1] linearly; no clipping, so values beyond the window fall outside [0, 1]."""
    lo, hi = window
    return (data - lo) / (hi - lo)


def denormalise(data, window: tuple[float, float]):
    """Inverse of :func:`normalise` (no clipping)."""
    lo, hi = window
    return data * (hi - lo) + lo
