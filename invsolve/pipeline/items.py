"""Data items of a study or a reconstruction: 2D slices listed cheaply, loaded one at a time.

An :class:`ItemRef` names one slice (``group`` = its volume or image, ``index`` = its position
there); :func:`list_items` enumerates them without reading pixel data, :func:`load_image` and
:func:`load_kspace` read one.

Resolution (SPEC: never silent). A prior works on ``n x n`` images. Data of that size are used as
they are. Data of another size are refused unless the dataset says ``resize: prior``, which means:

- images and NIfTI slices: zero-pad to a centred square, then resample to ``n x n`` (bilinear with
  anti-aliasing); :func:`restore_geometry` maps a reconstruction back (resample to the padded
  square, crop the padding), which is how NIfTI outputs keep the input's grid and header;
- fastMRI k-space: the fastMRI crop of the image to the header's reconstruction size (e.g. 320 x 320;
  removes readout oversampling), then the centre ``n x n`` of k-space (a band-limited downsampling,
  :func:`invsolve.datasets.fastmri_files.kspace_to_grid`). The crop alone (reconstruction size
  already ``n x n``) needs no ``resize``.

Intensities: phantoms are in [0, 1] already; images are divided by their dtype's maximum (floats
are used as they are); NIfTI volumes are mapped to [0, 1] by their (0.5, 99.5) percentile window
(values beyond it are kept, not clipped); fastMRI data are scaled in :mod:`invsolve.pipeline.problems`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")


@dataclass(frozen=True)
class ItemRef:
    """One 2D slice: ``group`` (a volume, file or phantom) and its ``index`` within it."""

    kind: str
    group: str
    index: int
    path: str | None = None
    volume: int | None = None  # 4D NIfTI: the volume the slice comes from

    @property
    def name(self) -> str:
        return f"{self.group}/{self.index}"


def _files(path: str, suffixes: tuple[str, ...], what: str) -> list[Path]:
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{what} path {root} does not exist")
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and "".join(p.suffixes[-2:]).lower().endswith(suffixes))
    files = [f for f in files if f.name.lower().endswith(suffixes)]
    if not files:
        raise ValueError(f"no {what} files ({', '.join(suffixes)}) under {root}")
    return files


def select_slices(n: int, slices: Any) -> list[int]:
    """Indices chosen by a dataset's ``slices`` option among ``n``."""
    if slices in (None, "all"):
        return list(range(n))
    if slices == "middle":
        return [n // 2]
    if isinstance(slices, Mapping):
        return list(range(n))[slice(slices.get("start"), slices.get("stop"), slices.get("step"))]
    bad = [s for s in slices if not -n <= s < n]
    if bad:
        raise IndexError(f"dataset.slices {bad} out of range for a volume of {n} slices")
    return [s % n for s in slices]


def list_items(dataset) -> list[ItemRef]:
    """Every slice of a :class:`~invsolve.study.config.DatasetSpec`, in a fixed order, without reading pixels."""
    kind = dataset.kind
    if kind == "phantoms":
        from invsolve.tasks import EVALUATION_SEED

        seed = dataset.get("seed", EVALUATION_SEED)
        items = [ItemRef(kind, f"phantom-s{seed}-{i:04d}", 0) for i in range(dataset.get("count", 20))]
    elif kind == "brain":
        split, seed = dataset.get("split", "heldout"), dataset.get("seed", 0)
        if split == "subjects":
            items = [ItemRef(kind, f"brain-subjects-{i:04d}", 0) for i in _subject_indices(dataset.get("count"))]
        else:
            items = [ItemRef(kind, f"brain-{split}-s{seed}-{i:04d}", 0) for i in range(dataset.get("count", 20))]
    elif kind == "shepp-logan":
        items = [ItemRef(kind, "shepp-logan", 0)]
    elif kind == "images":
        items = [ItemRef(kind, f.stem, 0, str(f)) for f in _files(dataset.get("path"), IMAGE_SUFFIXES, "image")]
    elif kind == "fastmri":
        from invsolve.datasets.fastmri_files import fastmri_info

        items = []
        for f in _files(dataset.get("path"), (".h5",), "fastMRI"):
            info = fastmri_info(f)
            items += [ItemRef(kind, f.name, s, str(f)) for s in select_slices(info.n_slices, dataset.get("slices"))]
    elif kind == "nifti":
        items = _nifti_items(dataset)
    else:
        raise ValueError(f"unknown dataset kind {kind!r}")
    limit = dataset.get("max_items")
    return items[:limit] if limit else items


def _subject_indices(count: int | None) -> list[int]:
    """``count`` of the real-subject slices (:func:`~invsolve.datasets.brain.subject_slices`), evenly spaced over
    both subjects; all of them when ``count`` is ``None``."""
    from invsolve.datasets.brain import subject_slices

    n = len(subject_slices(16))
    if count is None:
        return list(range(n))
    if count > n:
        raise ValueError(f"dataset.count {count} exceeds the {n} usable real-subject slices")
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, count)})


def _nifti_items(dataset) -> list[ItemRef]:
    from invsolve.datasets.nifti import n_volumes, read_nifti, slice_axis

    items = []
    for f in _files(dataset.get("path"), (".nii", ".nii.gz"), "NIfTI"):
        count = n_volumes(f)
        wanted = dataset.get("volume", 0 if count == 1 else None)
        if count == 1 and wanted not in (0, "all"):
            raise ValueError(f"{f} is 3D (one volume); dataset.volume {wanted!r} does not exist")
        if wanted is None:
            raise ValueError(f"{f} is 4D with {count} volumes; set dataset.volume to an index or 'all'")
        volumes = range(count) if wanted == "all" else [int(wanted)]
        first = read_nifti(f, volume=None if count == 1 else 0)
        axis = slice_axis(first, dataset.get("plane", "axial"))
        n = first.shape[axis]
        for v in volumes:
            group = f.name if count == 1 else f"{f.name}#{v}"
            items += [ItemRef("nifti", group, s, str(f), None if count == 1 else v)
                      for s in select_slices(n, dataset.get("slices"))]
    return items


# -- geometry -----------------------------------------------------------------------------------------
def check_size(shape: tuple[int, int], size: int, resize: str, what: str) -> None:
    """Refuse data whose in-plane shape is not the prior's ``size x size`` unless ``resize == "prior"``."""
    if tuple(shape) != (size, size) and resize != "prior":
        raise ValueError(
            f"{what} is {shape[0]}x{shape[1]} but the prior works on {size}x{size} images; set "
            "dataset resize: prior (CLI: --resize) to pad to a square and resample, or use a prior of that size"
        )


def to_prior_grid(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(H, W)`` -> ``(size, size)``: zero-pad to a centred square, then anti-aliased bilinear resampling."""
    h, w = image.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = F.pad(image, (left, side - w - left, top, side - h - top))
    if side == size:
        return square
    return F.interpolate(square[None, None].double(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0, 0].to(image.dtype)


def restore_geometry(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_prior_grid` (up to resampling): ``(n, n)`` -> ``shape``."""
    h, w = shape
    side = max(h, w)
    if image.shape[-1] != side:
        image = F.interpolate(image[None, None].double(), size=(side, side), mode="bilinear", antialias=True,
                              align_corners=False)[0, 0].to(image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    return image[top:top + h, left:left + w]


def slices_to_volume(slices: np.ndarray, record: dict, axis: int, shape: tuple[int, ...], *,
                     is_std: bool = False) -> np.ndarray:
    """Reconstructed slices ``(N, n, n)`` of one volume -> the volume on the input's grid and intensities.

    Undoes :func:`to_prior_grid` (``record["original_shape"]``) and the intensity window
    (``record["window"]``; a standard deviation is only scaled, not shifted).
    """
    from invsolve.datasets.nifti import from_slices

    lo, hi = record["window"]
    planes = [restore_geometry(torch.from_numpy(np.asarray(a)), tuple(record["original_shape"])).numpy()
              for a in slices]
    volume = from_slices(np.stack(planes)[:, None], axis, shape) * (hi - lo)
    return volume if is_std else volume + lo


# -- loading ------------------------------------------------------------------------------------------
@dataclass
class ImageData:
    """A real image slice on the prior grid, ``truth (1, 1, n, n)``, with what maps it back to the file."""

    truth: torch.Tensor
    original_shape: tuple[int, int]
    window: tuple[float, float] = (0.0, 1.0)  # physical = window[0] + normalised * (window[1] - window[0])


def load_image(ref: ItemRef, size: int, resize: str = "none", *, plane: str = "axial",
               percentiles: tuple[float, float] = (0.5, 99.5), volumes: dict | None = None) -> ImageData:
    """Load an image-like item (phantom, image file or NIfTI slice) on the ``size x size`` prior grid.

    ``volumes``: a dict the caller keeps to reuse a NIfTI volume across its slices (the last one read).
    """
    window = (0.0, 1.0)
    if ref.kind == "phantoms":
        from invsolve.tasks import phantoms

        seed, index = ref.group.split("-")[1:]
        image = phantoms(int(seed[1:]), 1, size, start=int(index))[0, 0]
    elif ref.kind == "brain":
        from invsolve.datasets.brain import BrainSlices, BrainTemplates

        cache = volumes if volumes is not None else {}
        if ref.group.startswith("brain-subjects-"):
            from invsolve.datasets.brain import subject_slices

            if ("brain-subjects", size) not in cache:
                cache["brain-subjects", size] = subject_slices(size)
            image = cache["brain-subjects", size][int(ref.group.rsplit("-", 1)[1]), 0]
        else:
            _, split, seed, index = ref.group.split("-")
            if "brain-templates" not in cache:
                cache["brain-templates"] = BrainTemplates()
            templates = cache["brain-templates"]
            image = BrainSlices(size, split=split, seed=int(seed[1:]), templates=templates)[int(index)][0]
    elif ref.kind == "shepp-logan":
        from invsolve.datasets import shepp_logan

        image = shepp_logan(size)[0]
    elif ref.kind == "images":
        image = read_image_file(Path(ref.path))
    elif ref.kind == "nifti":
        key = (ref.path, ref.volume, tuple(percentiles), plane)
        cached = volumes.get(key) if volumes is not None else None
        if cached is None:
            cached = _nifti_volume(*key)
            if volumes is not None:
                for old in [k for k in volumes if isinstance(k, tuple)]:
                    del volumes[old]  # one NIfTI volume at a time
                volumes[key] = cached
        volume, window, axis = cached
        from invsolve.datasets.nifti import to_slices

        image = to_slices(volume, axis)[ref.index, 0]
        image = (image.double() - window[0]) / (window[1] - window[0])
        image = image.float()
    else:
        raise ValueError(f"items of kind {ref.kind!r} hold k-space; use load_kspace")
    shape = tuple(image.shape)
    check_size(shape, size, resize, f"{ref.name}")
    return ImageData(to_prior_grid(image.float(), size)[None, None], shape, window)


def _nifti_volume(path: str, volume: int | None, percentiles: tuple[float, float], plane: str):
    from invsolve.datasets.nifti import intensity_window, read_nifti, slice_axis

    vol = read_nifti(path, volume=volume)
    bad = int(np.count_nonzero(~np.isfinite(vol.data)))
    if bad:
        where = f"{path}" if volume is None else f"{path} (volume {volume})"
        raise ValueError(f"{where}: {bad} NaN/Inf voxel(s); a volume to reconstruct must hold finite values only")
    lo, hi = intensity_window(vol.data, percentiles)
    if not hi > lo:
        hi = lo + 1.0
    return vol.data, (float(lo), float(hi)), slice_axis(vol, plane)


def read_image_file(path: Path) -> torch.Tensor:
    """A 2D grayscale image in [0, 1] (integer dtypes divided by their maximum; floats as they are)."""
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        from skimage import io

        try:
            array = io.imread(str(path))
        except Exception as err:  # imageio raises many types for unreadable files
            raise ValueError(f"{path}: not a readable image ({err})") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        from skimage.color import rgb2gray

        array = rgb2gray(array[..., :3])  # float in [0, 1]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2D grayscale or RGB image, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array / np.iinfo(array.dtype).max
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: image contains NaN/Inf values")
    return torch.from_numpy(array).float()


@dataclass
class KspaceData:
    """One fastMRI slice on the prior grid: ``kspace (coils, n, n)`` complex (``coils = 1`` for single-coil)."""

    kspace: torch.Tensor
    target: torch.Tensor  # (n, n): RSS (multi-coil) or magnitude (single-coil) of the fully sampled data
    multicoil: bool
    noise_std: float | None = None  # E|n|^2 per complex k-space entry on this grid, when the file records it


def load_kspace(ref: ItemRef, size: int, resize: str = "none") -> KspaceData:
    """Read one fastMRI slice and bring it to the ``size x size`` grid (see the module docstring)."""
    from invsolve.datasets.fastmri_files import fastmri_info, kspace_to_grid, read_fastmri
    from invsolve.datasets.training_data import ifft2c

    info = fastmri_info(ref.path)
    recon = tuple(info.recon_size[:2])
    check_size(recon, size, resize, f"{ref.name} (reconstruction size from its header)")
    data = read_fastmri(ref.path, slices=ref.index)
    kspace = np.asarray(data.kspace[0])
    if not info.multicoil:
        kspace = kspace[None]
    grid = np.stack([kspace_to_grid(k, recon, (size, size)) for k in kspace])
    kspace_t = torch.from_numpy(grid).to(torch.complex64)
    images = ifft2c(kspace_t)
    target = images.abs().square().sum(0).sqrt()
    noise = info.attrs.get("noise_std")
    if noise is not None:  # white noise: the crops keep its per-entry std, kspace_to_grid's rescaling does not
        noise = float(noise) * math.sqrt(size * size / (recon[0] * recon[1]))
    return KspaceData(kspace_t, target, info.multicoil, noise)

