"""fastMRI HDF5 files: lazy reading, writing (synthetic data) and resampling to a prior's grid.

Layout of a fastMRI file (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated
MRI", arXiv:1811.08839, 2018; read by ``fastmri.data.SliceDataset``):

* ``kspace``: complex64, ``(slices, rows, cols)`` single-coil or ``(slices, coils, rows, cols)``
  multi-coil. Rows are the readout (2x oversampled in the knee data: 640), columns the phase
  encodes (the undersampled axis); the centred orthonormal FFT (``fastmri.fft2c``) links k-space
  and image, zero frequency at index ``n // 2``, as in :mod:`invsolve.operators.mri`.
* ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil): float32
  ``(slices, h, w)`` targets (320 x 320 for knees). Test files have none, but have ``mask``.
* ``ismrmrd_header``: ISMRMRD XML; fastMRI reads ``encodedSpace``/``reconSpace`` matrix sizes
  (``encoding_size``/``recon_size``, x = rows, y = columns) and ``encodingLimits``/
  ``kspace_encoding_step_1`` centre and maximum (``padding_left``/``padding_right``).
* attrs: ``acquisition`` (e.g. ``CORPD_FBK``), ``max``/``norm`` of the target, ``patient_id``,
  ``acceleration`` (test files).

Submissions and their scoring: :mod:`invsolve.datasets.fastmri_submission`.

Synthetic files (:func:`synthesize_fastmri_volume`, :func:`write_synthetic_dataset`) hold
k-space ``F(S_c x) + noise`` with :func:`invsolve.operators.synthetic_coil_maps` and a target
computed from the noisy fully sampled k-space exactly as fastMRI does (RSS of the coil images,
or the magnitude image). The file is not readout-oversampled: ``recon_size`` is the grid itself.
"""

from __future__ import annotations

import hashlib
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from invsolve._atomic import atomic_h5
from invsolve._validation import require_nonnegative_number, require_positive_number

__all__ = [
    "FastMRIInfo", "FastMRIVolume", "SyntheticVolume", "fastmri_info", "ismrmrd_header", "kspace_to_grid",
    "parse_header", "read_fastmri", "synthesize_fastmri_volume", "write_fastmri", "write_synthetic_dataset",
]

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = {"multicoil": "reconstruction_rss", "singlecoil": "reconstruction_esc"}
PathLike = str | os.PathLike


@dataclass(frozen=True)
class FastMRIInfo:
    """What a fastMRI file holds, read without loading any array (``n_coils`` is None for single-coil)."""

    path: Path
    n_slices: int
    multicoil: bool
    kspace_shape: tuple[int, ...]
    n_coils: int | None
    target_key: str | None
    target_shape: tuple[int, ...] | None
    encoding_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    attrs: dict = field(default_factory=dict)
    has_mask: bool = False


@dataclass(frozen=True)
class FastMRIVolume:
    """Slices of a file: ``kspace`` complex64 ``(S, [C,] H, W)``, ``target`` float32 ``(S, h, w)`` or None."""

    kspace: np.ndarray
    target: np.ndarray | None
    info: FastMRIInfo
    header: bytes
    mask: np.ndarray | None
    slices: tuple[int, ...]


@dataclass(frozen=True)
class SyntheticVolume:
    """Output of :func:`synthesize_fastmri_volume` (torch tensors on the CPU)."""

    kspace: torch.Tensor  # complex64 (S, C, H, W) or (S, H, W)
    target: torch.Tensor  # float32 (S, H, W)
    coil_maps: torch.Tensor | None  # complex64 (C, H, W), sum_c |S_c|^2 = 1
    noise_std: float  # std of the complex k-space noise (E|n|^2 = noise_std^2), after ``scale``


# -- reading -------------------------------------------------------------------------------
@contextmanager
def open_h5(path: PathLike) -> Iterator[h5py.File]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"fastMRI file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:  # not HDF5, truncated, a directory, ...
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err
    with f:
        try:
            yield f
        except (OSError, KeyError, RuntimeError) as err:  # h5py raises these for corrupt files and datasets
            raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err


def _query(root: ET.Element, names: Sequence[str]) -> int:
    """fastMRI's ``et_query`` (nested descendant search in the ISMRMRD namespace), as an int."""
    el = root.find("." + "".join(f"//ismrmrd:{n}" for n in names), {"ismrmrd": ISMRMRD_NAMESPACE})
    if el is None or el.text is None:
        raise LookupError(f"element {'/'.join(names)} not found")
    return int(el.text)


def parse_header(header: bytes | str, where: object = "ismrmrd_header") -> dict:
    """``encoding_size``, ``recon_size``, ``padding_left``, ``padding_right`` as SliceDataset computes them."""
    try:
        root = ET.fromstring(header)
        enc = tuple(_query(root, ["encoding", "encodedSpace", "matrixSize", a]) for a in "xyz")
        rec = tuple(_query(root, ["encoding", "reconSpace", "matrixSize", a]) for a in "xyz")
        limits = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
        center, maximum = _query(root, limits + ["center"]), _query(root, limits + ["maximum"]) + 1
    except (ET.ParseError, LookupError, ValueError, TypeError) as err:
        raise ValueError(f"{where}: unparsable ISMRMRD header ({err})") from err
    left = enc[1] // 2 - center
    return {"encoding_size": enc, "recon_size": rec, "padding_left": left, "padding_right": left + maximum}


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _info(f: h5py.File, path: Path) -> tuple[FastMRIInfo, bytes]:
    for key in ("kspace", "ismrmrd_header"):
        if key not in f:
            raise ValueError(f"{path}: no {key!r} dataset (keys present: {sorted(f.keys())})")
    ks = f["kspace"]
    if not isinstance(ks, h5py.Dataset) or ks.ndim not in (3, 4):
        shape = getattr(ks, "shape", "a group")
        raise ValueError(f"{path}: kspace must be (slices, H, W) or (slices, coils, H, W), got {shape}")
    if ks.dtype.kind != "c":
        raise ValueError(f"{path}: kspace must be complex, got dtype {ks.dtype}")
    if ks.shape[0] == 0 or 0 in ks.shape[1:]:
        raise ValueError(f"{path}: kspace is empty (shape {ks.shape}); a file needs at least one slice of data")
    multicoil = ks.ndim == 4
    key = TARGET_KEYS["multicoil" if multicoil else "singlecoil"]
    target_key = key if key in f else None
    if target_key and (f[key].ndim != 3 or f[key].shape[0] != ks.shape[0]):
        raise ValueError(f"{path}: {key} must be ({ks.shape[0]}, h, w) like kspace's slices, got {f[key].shape}")
    header = f["ismrmrd_header"][()]
    header = header.encode() if isinstance(header, str) else bytes(header)
    meta = parse_header(header, path)
    info = FastMRIInfo(
        path=path, n_slices=int(ks.shape[0]), multicoil=multicoil, kspace_shape=tuple(ks.shape),
        n_coils=int(ks.shape[1]) if multicoil else None, target_key=target_key,
        target_shape=tuple(f[key].shape) if target_key else None, attrs={k: _plain(v) for k, v in f.attrs.items()},
        has_mask="mask" in f, **meta,
    )
    return info, header


def fastmri_info(path: PathLike) -> FastMRIInfo:
    """Shapes, header metadata and attrs of a fastMRI file (no array data is read)."""
    with open_h5(path) as f:
        return _info(f, Path(path))[0]


def _indices(slices: int | slice | Sequence[int] | None, n: int) -> list[int]:
    if slices is None:
        return list(range(n))
    if isinstance(slices, slice):
        return list(range(n)[slices])
    items = [slices] if isinstance(slices, (int, np.integer)) else slices
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, np.ndarray)):
        raise TypeError(f"slices must be an int, a slice, a sequence of ints or None, got {type(slices).__name__}")
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"slices must contain ints, got {i!r}")
        if not -n <= i < n:
            raise IndexError(f"slices index {i} is out of range for a volume of {n} slices (valid: {-n}..{n - 1})")
        out.append(int(i) % n)
    return out


def _read(ds: h5py.Dataset, idx: list[int]) -> np.ndarray:
    """Read only the requested slices: one hyperslab when they are consecutive, else slice by slice."""
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return ds[idx[0] : idx[-1] + 1]
    return np.stack([ds[i] for i in idx]) if idx else np.empty((0, *ds.shape[1:]), ds.dtype)


def read_fastmri(path: PathLike, slices: int | slice | Sequence[int] | None = None) -> FastMRIVolume:
    """Read ``slices`` (all by default; an int gives one slice, ``S = 1``) of a fastMRI file."""
    with open_h5(path) as f:
        info, header = _info(f, Path(path))
        idx = _indices(slices, info.n_slices)
        kspace = _read(f["kspace"], idx).astype(np.complex64, copy=False)
        bad = ~np.isfinite(kspace).reshape(len(idx), -1).all(axis=1)
        if bad.any():
            raise ValueError(f"{path}: kspace of slice(s) {[i for i, b in zip(idx, bad) if b]} holds NaN/Inf values; "
                             "k-space to reconstruct must be finite")
        target = _read(f[info.target_key], idx).astype(np.float32, copy=False) if info.target_key else None
        mask = np.asarray(f["mask"]) if info.has_mask else None
    return FastMRIVolume(kspace, target, info, header, mask, tuple(idx))


# -- writing -------------------------------------------------------------------------------
def _sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _size3(name: str, size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(size)
    if len(size) == 2:
        size = (*size, 1)
    if len(size) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"{name} must be (x, y) or (x, y, z) positive ints, got {size!r}")
    return tuple(int(s) for s in size)


def ismrmrd_header(
    encoding_size: Sequence[int], recon_size: Sequence[int], *, n_coils: int | None = None, n_slices: int = 1,
    center: int | None = None, maximum: int | None = None, pixel_mm: float = 0.5, slice_mm: float = 3.0,
    field_strength_t: float = 3.0,
) -> bytes:
    """A minimal valid ISMRMRD XML header (UTF-8 bytes) with everything fastMRI's SliceDataset reads.

    ``x`` is the readout (rows), ``y`` the phase-encode axis (columns). The encoding limits of
    ``kspace_encoding_step_1`` default to centre ``y // 2`` and maximum ``y - 1`` (no padding:
    ``padding_left = 0``, ``padding_right = y``). Fields of view are ``matrix * pixel_mm``.
    """
    enc, rec = _size3("encoding_size", encoding_size), _size3("recon_size", recon_size)
    center = enc[1] // 2 if center is None else int(center)
    maximum = enc[1] - 1 if maximum is None else int(maximum)
    root = ET.Element("ismrmrdHeader", {"xmlns": ISMRMRD_NAMESPACE})
    system = _sub(root, "acquisitionSystemInformation")
    _sub(system, "systemVendor", "invsolve-synthetic")
    _sub(system, "systemFieldStrength_T", field_strength_t)
    _sub(system, "receiverChannels", 1 if n_coils is None else int(n_coils))
    _sub(_sub(root, "experimentalConditions"), "H1resonanceFrequency_Hz", round(42.577478e6 * field_strength_t))
    encoding = _sub(root, "encoding")
    for name, size in (("encodedSpace", enc), ("reconSpace", rec)):
        space = _sub(encoding, name)
        fov = (size[0] * pixel_mm, size[1] * pixel_mm, slice_mm)
        for tag, values in (("matrixSize", size), ("fieldOfView_mm", fov)):
            node = _sub(space, tag)
            for axis, v in zip("xyz", values):
                _sub(node, axis, v)
    limits = _sub(encoding, "encodingLimits")
    for name, lo, hi, c in (("kspace_encoding_step_1", 0, maximum, center), ("kspace_encoding_step_2", 0, 0, 0),
                            ("slice", 0, n_slices - 1, n_slices // 2)):
        node = _sub(limits, name)
        for tag, v in (("minimum", lo), ("maximum", hi), ("center", c)):
            _sub(node, tag, v)
    _sub(encoding, "trajectory", "cartesian")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def as_numpy(name: str, a: object) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().resolve_conj().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")
    if a.dtype.kind not in "fc" or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite float or complex array, got dtype {a.dtype}")
    return a


def refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")


def write_fastmri(
    path: PathLike, kspace: np.ndarray | torch.Tensor, *, target: np.ndarray | torch.Tensor | None = None,
    attrs: dict | None = None, header: bytes | str | None = None, mask: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a fastMRI-format file atomically (temporary ``.h5`` in the same folder, then a rename).

    ``kspace`` complex ``(S, H, W)`` or ``(S, C, H, W)``; ``target`` ``(S, h, w)`` is stored as
    ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil). Default attrs
    (overridden by ``attrs``): ``acquisition="CORPD_FBK"``, ``patient_id`` (a hash of the file
    name), and with a target ``max`` and ``norm``. Default header: :func:`ismrmrd_header` with
    encoding size ``(H, W, 1)`` and recon size ``(h, w, 1)`` (``(H, W, 1)`` without a target).
    ``mask`` (optional) is stored as the ``mask`` dataset of fastMRI test files (a column mask).
    """
    path = Path(path)
    ks = as_numpy("kspace", kspace)
    if ks.dtype.kind != "c" or ks.ndim not in (3, 4):
        raise ValueError(f"kspace must be complex (S, H, W) or (S, C, H, W), got {ks.dtype} {ks.shape}")
    tgt = None if target is None else as_numpy("target", target)
    if tgt is not None and (tgt.dtype.kind != "f" or tgt.ndim != 3 or tgt.shape[0] != ks.shape[0]):
        raise ValueError(f"target must be real ({ks.shape[0]}, h, w), got {tgt.dtype} {tgt.shape}")
    refuse_existing(path, overwrite)
    multicoil = ks.ndim == 4
    if header is None:
        recon = tgt.shape[-2:] if tgt is not None else ks.shape[-2:]
        header = ismrmrd_header((*ks.shape[-2:], 1), (*recon, 1), n_coils=ks.shape[1] if multicoil else None,
                                n_slices=ks.shape[0])
    header = header.encode() if isinstance(header, str) else bytes(header)
    parse_header(header, "header")
    file_attrs: dict = {"acquisition": "CORPD_FBK", "patient_id": hashlib.sha256(path.stem.encode()).hexdigest()}
    if tgt is not None:
        file_attrs.update(max=float(tgt.max()), norm=float(np.linalg.norm(tgt)))
    file_attrs.update(attrs or {})
    with atomic_h5(path) as f:
        f.create_dataset("ismrmrd_header", data=header, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("kspace", data=ks.astype(np.complex64, copy=False))
        if tgt is not None:
            f.create_dataset(TARGET_KEYS["multicoil" if multicoil else "singlecoil"], data=tgt.astype(np.float32))
        if mask is not None:
            f.create_dataset("mask", data=np.asarray(mask))
        f.attrs.update(file_attrs)
    return path


def _fastmri_target(kspace: torch.Tensor) -> torch.Tensor:
    """fastMRI's target from fully sampled k-space: RSS of coil magnitudes (multi-coil) or the magnitude."""
    import fastmri

    image = fastmri.complex_abs(fastmri.ifft2c(torch.view_as_real(kspace)))
    return fastmri.rss(image, dim=1) if kspace.dim() == 4 else image


def synthesize_fastmri_volume(
    images: torch.Tensor, *, n_coils: int | None, noise_level: float, generator: torch.Generator,
    scale: float = 1.0,
) -> SyntheticVolume:
    """fastMRI-like k-space of ``images`` (``(S, H, W)`` or ``(S, 1, H, W)``, real or complex).

    Multi-coil: ``F(S_c x)`` with ``synthetic_coil_maps(n_coils, (H, W))``; single-coil
    (``n_coils=None``): ``F x``. Complex Gaussian noise with ``E|n|^2 = noise_std^2``,
    ``noise_std = noise_level * RMS(|kspace|)`` (the RMS over the whole clean volume) is drawn
    from ``generator`` (CPU); then everything is multiplied by ``scale`` (real fastMRI k-space
    is ~1e-5). The target comes from the noisy k-space exactly as fastMRI computes it.
    """
    from invsolve.operators.fourier import fft2c
    from invsolve.operators.masks import synthetic_coil_maps

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or not bool(torch.isfinite(torch.view_as_real(images.to(torch.complex128))).all()):
        raise ValueError(f"images must be finite (S, H, W) or (S, 1, H, W), got shape {tuple(images.shape)}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise TypeError("generator must be a CPU torch.Generator (the noise is drawn on the CPU)")
    noise_level = require_nonnegative_number("noise_level", noise_level)
    scale = require_positive_number("scale", scale)
    x = images.detach().cpu().to(torch.complex128)
    maps = None if n_coils is None else synthetic_coil_maps(n_coils, tuple(x.shape[-2:]), torch.complex128)
    coil = x if maps is None else maps[None] * x[:, None]
    clean = fft2c(coil)
    std = noise_level * float(clean.abs().square().mean().sqrt())
    noise = torch.randn((*clean.shape, 2), generator=generator, dtype=torch.float64) * (std / math.sqrt(2))
    kspace = ((clean + torch.view_as_complex(noise)) * scale).to(torch.complex64)
    return SyntheticVolume(kspace, _fastmri_target(kspace), None if maps is None else maps.to(torch.complex64),
                           std * scale)


def write_synthetic_dataset(
    folder: PathLike, *, n_volumes: int, n_slices: int, size: int, n_coils: int | None, seed: int,
    noise_level: float = 0.01, scale: float = 1e-4, overwrite: bool = False, source: str = "ellipses",
) -> list[Path]:
    """``n_volumes`` synthetic fastMRI files ``file{seed}{v:03d}.h5`` (``brain{seed}{v:03d}.h5`` for brains) in
    ``folder``; returns their paths.

    Slice ``s`` of volume ``v`` is item ``v * n_slices + s`` of ``EllipsePhantoms(size, seed=seed)`` (the stream of
    :func:`invsolve.tasks.phantoms`) or, with ``source="brain"``, of the held-out brain stream
    ``BrainSlices(size, split="heldout", seed=seed)`` (:mod:`invsolve.datasets.brain`): every slice is an
    independent image, consecutive slices are not anatomically related. The noise of volume ``v`` has its own
    generator (seeded from ``(seed, v)``). Multi-coil files (with ``reconstruction_rss``) when ``n_coils`` is an
    int, single-coil (``reconstruction_esc``) for None.
    """
    from invsolve.datasets.training_data import EllipsePhantoms

    for name, v in (("n_volumes", n_volumes), ("n_slices", n_slices)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if source == "brain":
        from invsolve.datasets.brain import BrainSlices

        data, stem = BrainSlices(size, split="heldout", seed=seed), "brain"
    elif source == "ellipses":
        data, stem = EllipsePhantoms(size, seed=seed), "file"
    else:
        raise ValueError(f"source must be 'ellipses' or 'brain', got {source!r}")
    paths = [Path(folder) / f"{stem}{seed}{v:03d}.h5" for v in range(n_volumes)]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass overwrite=True to replace")
    for v, path in enumerate(paths):
        images = torch.stack([data[v * n_slices + s][0] for s in range(n_slices)])
        state = np.random.SeedSequence([seed, v, 1]).generate_state(1, dtype=np.uint32)[0]
        vol = synthesize_fastmri_volume(images, n_coils=n_coils, noise_level=noise_level, scale=scale,
                                        generator=torch.Generator().manual_seed(int(state)))
        write_fastmri(path, vol.kspace, target=vol.target, attrs={"noise_std": vol.noise_std}, overwrite=overwrite)
    return paths


def _fft2c(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """:func:`invsolve.operators.fourier.fft2c` (or its inverse) on a numpy array."""
    from invsolve.operators.fourier import fft2c, ifft2c

    return (ifft2c if inverse else fft2c)(torch.from_numpy(x)).numpy()


def _size2(name: str, size: Sequence[int]) -> tuple[int, int]:
    size = tuple(size)
    if len(size) not in (2, 3) or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(f"{name} must be (h, w) (or a header's (x, y, z)) of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def kspace_to_grid(kspace: np.ndarray | torch.Tensor, recon_size: Sequence[int], out_size: Sequence[int]) -> np.ndarray:
    """Resample k-space ``(..., H, W)`` to the k-space of an ``out_size`` image (band-limited downsampling).

    1. ``ifft2c``, centre-crop the image to ``recon_size`` (fastMRI's ``center_crop``; this
       removes the readout oversampling, e.g. 640 x 368 -> 320 x 320 for knees);
    2. ``fft2c``, keep the central ``out_size`` frequencies (zero frequency stays at ``n // 2``),
       i.e. an ideal low-pass followed by sampling on the coarser grid;
    3. multiply by ``sqrt(out_h * out_w / (recon_h * recon_w))`` so that image intensities are
       preserved under the orthonormal FFT (a constant image keeps its value).

    Returns complex64 (complex128 for complex128 input). ``out_size`` may not exceed ``recon_size``.
    """
    k = as_numpy("kspace", kspace)
    if k.dtype.kind != "c" or k.ndim < 2:
        raise ValueError(f"kspace must be a complex array (..., H, W), got {k.dtype} {k.shape}")
    (rh, rw), (oh, ow) = _size2("recon_size", recon_size), _size2("out_size", out_size)
    h, w = k.shape[-2:]
    if rh > h or rw > w:
        raise ValueError(f"recon_size {(rh, rw)} exceeds the k-space grid {(h, w)}")
    if oh > rh or ow > rw:
        raise ValueError(f"out_size {(oh, ow)} exceeds recon_size {(rh, rw)}; only downsampling is supported")
    image = _fft2c(k.astype(np.complex128), inverse=True)
    top, left = (h - rh) // 2, (w - rw) // 2
    grid = _fft2c(image[..., top : top + rh, left : left + rw])
    top, left = rh // 2 - oh // 2, rw // 2 - ow // 2
    out = grid[..., top : top + oh, left : left + ow] * math.sqrt(oh * ow / (rh * rw))
    return out.astype(np.complex128 if k.dtype == np.complex128 else np.complex64)
