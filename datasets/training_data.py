"""Training data for diffusion priors: map-style torch Datasets of 2D images ``(C, H, W)``.

Five sources, all returning float32 tensors of shape ``(C, size, size)``:

* :class:`EllipsePhantoms` - seeded random 2D ellipse phantoms, values in ``[0, 1]``, ``C = 1``.
* :class:`EllipsoidSlices` - 2D slices of seeded random 3D ellipsoid phantoms, ``[0, 1]``, ``C = 1``.
* :class:`~invsolve.datasets.brain.BrainSlices` - the training split of the seeded brain-image stream made from
  nilearn's MNI152 templates (:mod:`invsolve.datasets.brain`), ``[0, 1]``, ``C = 1``.
* :class:`NiftiSlices` - 2D slices of a folder of NIfTI volumes (nibabel), ``[0, 1]``, ``C = 1``.
* :class:`FastMRISlices` - slices of fastMRI HDF5 files (h5py): magnitude (``C = 1``, ``[0, 1]``) or
  complex as (real, imag) channels (``C = 2``, magnitude ``<= 1`` up to outliers).

Procedural sources are deterministic per index: item ``i`` of a dataset with ``seed`` is drawn from
its own ``torch.Generator`` (:func:`item_generator`), so any order of access (and any resume of a
training run) sees the same images.

Normalization of file sources (documented here once):

* NIfTI: each volume is reoriented to the closest canonical (RAS+) orientation
  (``nibabel.as_closest_canonical``; 4D files are split into their 3D frames), intensities are
  clipped to the volume's ``[0.5, 99.5]`` percentiles and mapped affinely onto ``[0, 1]``
  (a constant volume maps to zeros). Each slice is zero-padded (centred) to a square and resized to
  ``size x size`` with antialiased bilinear interpolation. Voxel anisotropy is not corrected.
* fastMRI: magnitude comes from ``reconstruction_rss`` when the file has it, else the root sum of
  squares of the coil images; complex images come from ``kspace`` via the centred orthonormal inverse
  FFT (fastMRI's ``ifft2c`` convention), multi-coil data combined into one virtual coil (the dominant
  left singular vector of the coil images, per slice; phase is then defined up to a global constant).
  Images are centre-cropped to ``crop`` (default 320, the fastMRI evaluation size; smaller images are
  kept whole), resized to ``size x size`` (antialiased bilinear, real and imaginary parts
  separately), and divided by the volume's 99.5th percentile of the magnitude. Magnitude images are
  then clipped to ``[0, 1]``; complex images are not clipped.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from invsolve.datasets.ellipsoids import random_ellipsoids, volume_slice
from invsolve.datasets.phantoms import random_ellipses
from invsolve.operators.fourier import ifft2c

SOURCES: tuple[str, ...] = ("ellipses", "ellipsoids", "brain", "brain-volumes", "nifti", "fastmri")
_MAX_SEED = 2**31
_MAX_LENGTH = 2**32


def item_generator(seed: int, index: int) -> torch.Generator:
    """The generator for item ``index`` of a procedural dataset.

    torch's CPU generator (MT19937) keeps only the low 32 bits of its seed, so ``(seed, index)`` is
    hashed to 32 bits with NumPy's ``SeedSequence([seed, index])`` (well mixed: nearby seeds and
    indices give unrelated streams; two distinct pairs share a stream with probability ``2**-32``).
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0]
    return torch.Generator().manual_seed(int(state))


def _check_seed_length(seed: int, length: int) -> None:
    if not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    if not isinstance(length, int) or not 1 <= length <= _MAX_LENGTH:
        raise ValueError(f"length must be an integer in [1, 2**32], got {length!r}")


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")


def _index(index: int, length: int) -> int:
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of length {length}")
    return index


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a ``(C, H, W)`` image (centred) to a square, then resize to ``size x size`` (antialiased bilinear)."""
    c, h, w = image.shape
    side = max(h, w)
    if h != w:
        top, left = (side - h) // 2, (side - w) // 2
        image = F.pad(image, (left, side - w - left, top, side - h - top))
    if side != size:
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return image


class EllipsePhantoms(Dataset):
    """``length`` seeded random ellipse phantoms (:func:`~invsolve.datasets.phantoms.random_ellipses`), ``(1, size, size)``.
    """

    channels = 1
    value_range = (0.0, 1.0)

    def __init__(
        self, size: int = 64, *, length: int = 2**32, seed: int = 0, n_ellipses: tuple[int, int] = (4, 10)
    ) -> None:
        _check_size(size)
        _check_seed_length(seed, length)
        self.size, self.length, self.seed, self.n_ellipses = size, length, seed, tuple(n_ellipses)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        i = _index(index, self.length)
        return random_ellipses(self.size, item_generator(self.seed, i), n_ellipses=self.n_ellipses)


class EllipsoidSlices(Dataset):
    """2D slices of ``n_volumes`` seeded random ellipsoid volumes (:func:`~invsolve.datasets.ellipsoids.random_ellipsoids`).

    Volume ``v`` uses ``item_generator(seed, v)``; its slices along each axis in ``axes`` are taken
    from the central ``central_fraction`` of that axis (outer slices are mostly empty). Items are
    ordered volume by volume; the most recently used volumes are cached.
    """

    channels = 1
    value_range = (0.0, 1.0)

    def __init__(
        self,
        size: int = 64,
        *,
        n_volumes: int = 1000,
        seed: int = 0,
        axes: Sequence[int] = (0, 1, 2),
        central_fraction: float = 0.6,
        n_ellipsoids: tuple[int, int] = (4, 10),
        cache_volumes: int = 2,
    ) -> None:
        _check_size(size)
        _check_seed_length(seed, n_volumes)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes!r}")
        if not 0 < central_fraction <= 1:
            raise ValueError(f"central_fraction must lie in (0, 1], got {central_fraction}")
        self.size, self.n_volumes, self.seed = size, n_volumes, seed
        self.axes = tuple(int(a) for a in axes)
        self.n_ellipsoids = tuple(n_ellipsoids)
        n_central = max(1, int(round(size * central_fraction)))
        start = (size - n_central) // 2
        self.slice_indices = list(range(start, start + n_central))
        self.per_volume = len(self.axes) * n_central
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = max(1, int(cache_volumes))

    def __len__(self) -> int:
        return self.n_volumes * self.per_volume

    def volume(self, v: int) -> torch.Tensor:
        if v in self._cache:
            self._cache.move_to_end(v)
            return self._cache[v]
        vol = random_ellipsoids(self.size, item_generator(self.seed, v), n_ellipsoids=self.n_ellipsoids)
        self._cache[v] = vol
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vol

    def __getitem__(self, index: int) -> torch.Tensor:
        i = _index(index, len(self))
        v, rem = divmod(i, self.per_volume)
        axis_pos, k = divmod(rem, len(self.slice_indices))
        return volume_slice(self.volume(v), self.axes[axis_pos], self.slice_indices[k]).contiguous()


def _list_files(root: str | os.PathLike | Sequence[str | os.PathLike], suffixes: tuple[str, ...], what: str) -> list[Path]:
    if isinstance(root, (str, os.PathLike)):
        path = Path(root)
        if not path.exists():
            raise FileNotFoundError(f"{what} path {path} does not exist")
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.name.lower().endswith(suffixes))
    else:
        files = [Path(p) for p in root]
        for p in files:
            if not p.is_file():
                raise FileNotFoundError(f"{what} file {p} does not exist")
    if not files:
        raise FileNotFoundError(f"no {what} files ({', '.join(suffixes)}) found under {root}")
    return files


def normalize_percentiles(volume: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip to the volume's percentiles and map them affinely onto ``[0, 1]`` (float32; constant volumes give zeros)."""
    lo, hi = np.percentile(volume, percentiles)
    if not hi > lo:
        return np.zeros_like(volume, dtype=np.float32)
    return ((np.clip(volume, lo, hi) - lo) / (hi - lo)).astype(np.float32)


class NiftiSlices(Dataset):
    """2D slices along ``axis`` of every NIfTI volume (``.nii``, ``.nii.gz``) under ``root``.

    ``root`` is a folder (searched recursively), one file, or a list of files. See the module
    docstring for the normalization. Slice counts are read from headers at construction; voxel data
    is read when a slice is first requested (the last ``cache_volumes`` volumes are kept).
    """

    channels = 1
    value_range = (0.0, 1.0)

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        size: int = 64,
        *,
        axis: int = 2,
        percentiles: tuple[float, float] = (0.5, 99.5),
        cache_volumes: int = 1,
    ) -> None:
        import nibabel as nib

        _check_size(size)
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
        if not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
        self.size, self.axis, self.percentiles = size, axis, tuple(percentiles)
        self.files = _list_files(root, (".nii", ".nii.gz"), "NIfTI")
        self.items: list[tuple[int, int, int]] = []  # (file, frame, slice)
        for f_idx, path in enumerate(self.files):
            try:
                shape = nib.load(str(path)).shape
            except Exception as err:  # nibabel raises several types for unreadable files
                raise ValueError(f"{path}: not a readable NIfTI file ({err})") from err
            if len(shape) not in (3, 4):
                raise ValueError(f"{path}: expected a 3D or 4D volume, got shape {shape}")
            frames = shape[3] if len(shape) == 4 else 1
            for frame in range(frames):
                self.items.extend((f_idx, frame, s) for s in range(shape[axis]))
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_size = max(1, int(cache_volumes))

    def __len__(self) -> int:
        return len(self.items)

    def volume(self, f_idx: int, frame: int) -> np.ndarray:
        """The normalized canonical-orientation 3D volume ``frame`` of file ``f_idx``."""
        import nibabel as nib

        key = (f_idx, frame)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        img = nib.as_closest_canonical(nib.load(str(self.files[f_idx])))
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4:
            data = data[..., frame]
        vol = normalize_percentiles(np.asarray(data, dtype=np.float64), self.percentiles)
        self._cache[key] = vol
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vol

    def __getitem__(self, index: int) -> torch.Tensor:
        f_idx, frame, s = self.items[_index(index, len(self))]
        image = np.take(self.volume(f_idx, frame), s, axis=self.axis)
        return resize_square(torch.from_numpy(np.ascontiguousarray(image))[None], self.size)


def _center_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[..., top : top + ch, left : left + cw]


def virtual_coil(coil_images: torch.Tensor) -> torch.Tensor:
    """Combine ``(C, H, W)`` complex coil images into one: projection on the dominant left singular vector."""
    c = coil_images.shape[0]
    flat = coil_images.reshape(c, -1)
    u, _, _ = torch.linalg.svd(flat, full_matrices=False)
    return (u[:, 0].conj() @ flat).reshape(coil_images.shape[1:])


class FastMRISlices(Dataset):
    """Slices of fastMRI HDF5 files (single- or multi-coil), as magnitude or complex (real, imag) images.

    ``root`` is a folder (searched recursively for ``.h5``), one file, or a list of files. See the
    module docstring for the normalization. The last ``cache_volumes`` volumes are kept in memory.
    """

    value_range = (0.0, 1.0)

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        size: int = 64,
        *,
        mode: Literal["magnitude", "complex"] = "magnitude",
        crop: int = 320,
        percentile: float = 99.5,
        cache_volumes: int = 1,
    ) -> None:
        import h5py

        _check_size(size)
        if mode not in ("magnitude", "complex"):
            raise ValueError(f"mode must be 'magnitude' or 'complex', got {mode!r}")
        if not isinstance(crop, int) or crop < 8:
            raise ValueError(f"crop must be an integer >= 8, got {crop!r}")
        self.size, self.mode, self.crop, self.percentile = size, mode, crop, float(percentile)
        self.channels = 1 if mode == "magnitude" else 2
        self.value_range = (0.0, 1.0) if mode == "magnitude" else (-1.0, 1.0)
        self.files = _list_files(root, (".h5",), "fastMRI")
        self.items: list[tuple[int, int]] = []
        for f_idx, path in enumerate(self.files):
            try:
                with h5py.File(path, "r") as f:
                    key = self._key(f, path)
                    n = f[key].shape[0]
            except OSError as err:
                raise ValueError(f"{path}: not a readable HDF5 file ({err})") from err
            self.items.extend((f_idx, s) for s in range(n))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = max(1, int(cache_volumes))

    def _key(self, f, path: Path) -> str:
        if self.mode == "magnitude" and "reconstruction_rss" in f:
            return "reconstruction_rss"
        if "kspace" not in f:
            raise ValueError(f"{path}: no 'kspace' dataset (keys: {sorted(f.keys())})")
        if f["kspace"].ndim not in (3, 4):
            raise ValueError(f"{path}: kspace must be (slices, H, W) or (slices, coils, H, W), got {f['kspace'].shape}")
        return "kspace"

    def __len__(self) -> int:
        return len(self.items)

    def _images(self, path: Path) -> torch.Tensor:
        """All slices of one file as complex or magnitude images ``(S, H, W)``, cropped, not normalized."""
        import h5py

        with h5py.File(path, "r") as f:
            key = self._key(f, path)
            data = torch.from_numpy(np.asarray(f[key]))
        if key == "reconstruction_rss":
            return _center_crop(data.to(torch.float32), self.crop)
        coil = ifft2c(data.to(torch.complex64))
        if coil.dim() == 4:  # multi-coil
            if self.mode == "magnitude":
                images = coil.abs().square().sum(1).sqrt()
            else:
                images = torch.stack([virtual_coil(c) for c in coil])
        else:
            images = coil.abs() if self.mode == "magnitude" else coil
        return _center_crop(images, self.crop)

    def volume(self, f_idx: int) -> torch.Tensor:
        """All slices of file ``f_idx``, normalized and resized: ``(S, C, size, size)``."""
        if f_idx in self._cache:
            self._cache.move_to_end(f_idx)
            return self._cache[f_idx]
        images = self._images(self.files[f_idx])
        if images.is_complex():
            chans = torch.stack([images.real, images.imag], dim=1)
        else:
            chans = images[:, None]
        size = (self.size, self.size)
        chans = F.interpolate(chans.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        mag = chans.square().sum(1).sqrt() if self.channels == 2 else chans.abs()
        scale = float(torch.quantile(mag.flatten().double()[:: max(1, mag.numel() // 2_000_000)], self.percentile / 100))
        vol = chans / scale if scale > 0 else torch.zeros_like(chans)
        if self.mode == "magnitude":
            vol = vol.clamp(0.0, 1.0)
        self._cache[f_idx] = vol
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vol

    def __getitem__(self, index: int) -> torch.Tensor:
        f_idx, s = self.items[_index(index, len(self))]
        return self.volume(f_idx)[s]


def build_training_data(source: str, size: int, *, seed: int = 0, path: str | None = None, **options) -> Dataset:
    """One of the sources by name (the names used by configs and the CLI).

    Args:
        source: ``"ellipses"``, ``"ellipsoids"``, ``"brain"`` (the training split of
            :class:`~invsolve.datasets.brain.BrainSlices`), ``"brain-volumes"`` (axial slices of training
            brain volumes, :class:`~invsolve.datasets.brain.BrainVolumeSlices`), ``"nifti"`` or ``"fastmri"``.
        size: image side length.
        seed: seed of procedural sources (ignored for files).
        path: folder or file for ``"nifti"`` and ``"fastmri"``.
        options: keyword arguments of the dataset class (e.g. ``mode="complex"`` for fastMRI).
    """
    if source == "ellipses":
        return EllipsePhantoms(size, seed=seed, **options)
    if source == "ellipsoids":
        return EllipsoidSlices(size, seed=seed, **options)
    if source == "brain":
        from invsolve.datasets.brain import BrainSlices

        return BrainSlices(size, split="train", seed=seed, **options)
    if source == "brain-volumes":
        from invsolve.datasets.brain import BrainVolumeSlices

        return BrainVolumeSlices(size, seed=seed, **options)
    if source in ("nifti", "fastmri"):
        if path is None:
            raise ValueError(f"source {source!r} needs data_path (--data-path: a folder or file)")
        cls = NiftiSlices if source == "nifti" else FastMRISlices
        return cls(path, size, **options)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
