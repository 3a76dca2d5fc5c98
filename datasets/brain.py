"""Realistic brain images and volumes from the MNI152 templates that ship inside nilearn (no download).

The templates (:func:`nilearn.datasets.load_mni152_template`, ``..._gm_template``, ``..._wm_template``: the
2009 symmetric T1 template and its grey- and white-matter probability maps, 197 x 233 x 189 at 1 mm,
skull-stripped) are read from the installed package. A seeded stream turns them into varied anatomy-like
images:

1. **Tissue maps**: grey matter ``GM``, white matter ``WM`` and CSF ``= clip(brain - GM - WM)`` (brain: T1 > 0.05),
   plus the T1 template itself.
2. **Geometry**: a plane (axial, coronal or sagittal) at a random position; a random affine (in-plane rotation
   +-15 deg, out-of-plane tilt, isotropic scale 0.9-1.1 with +-5% anisotropy, shear +-0.05) and a smooth elastic
   displacement (a 5 x 5 grid of N(0, 2 mm) offsets, bicubically interpolated); the field of view is 200 mm
   square, sampled at twice the output resolution and average-pooled (anti-aliasing).
3. **Contrast**: ``sum_t c_t * P_t`` over (GM, WM, CSF) with weights of a T1-, T2-, PD-like or random contrast,
   blended with the T1 template for T1-like images; a smooth multiplicative bias field ``exp(b)`` (a 4 x 4 grid of
   N(0, 0.15), bicubic); then divided by the image maximum, so values lie in ``[0, 1]``.

**Splits, disjoint by construction** (voxel index ``z`` of the template, inferior to superior):

- ``"train"``: every voxel with ``z < TRAIN_Z_MAX`` (the rest set to zero before sampling), any plane;
- ``"tuning"``: the same region under a stream of its own (item seeds keyed by the split name);
- ``"heldout"``: every voxel with ``z >= HELDOUT_Z_MIN``, axial planes inside the band only (coronal and
  sagittal planes of a 25 mm band would be mostly background). A 5 mm gap separates it from training.

Real subjects of other contrasts (nibabel's bundled EPI ``example4d.nii.gz`` and T1 ``anatomical.nii``) are the
second held-out set: :func:`subject_slices` (the files: :func:`real_subject_paths`). :func:`brain_volume` draws 3D volumes the
same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from invsolve._validation import require_generator

TRAIN_Z_MAX = 120
HELDOUT_Z_MIN = 125
SPLITS = ("train", "tuning", "heldout")
PLANES = ("axial", "coronal", "sagittal")
CONTRASTS = ("t1", "t2", "pd", "random")
FIELD_OF_VIEW_MM = 200.0
#: Axial slice centres of the held-out stream (voxel z), inside the band with room for the tilt.
HELDOUT_AXIAL_Z = (130, 145)
_SPLIT_KEYS = {"train": 0, "tuning": 1, "heldout": 2}


def real_subject_paths() -> list[Path]:
    """nibabel's bundled real brains: the EPI ``example4d.nii.gz`` and the T1 ``anatomical.nii``."""
    from nibabel.testing import data_path

    return [Path(data_path) / "example4d.nii.gz", Path(data_path) / "anatomical.nii"]


def subject_slices(size: int = 64, *, min_fraction: float = 0.15) -> torch.Tensor:
    """Held-out set (b): the usable axial slices of nibabel's two real brains, ``(N, 1, size, size)`` in ``[0, 1]``.

    The first frame of the EPI ``example4d.nii.gz`` (the second repeats it) and the T1 ``anatomical.nii``, read
    as NIfTI training data is read (:class:`~invsolve.datasets.training_data.NiftiSlices`: canonical
    orientation, percentile window, zero-padded to a square and resampled to ``size``). A slice is usable when
    pixels above 0.1 cover at least ``min_fraction`` of its square (judged at the file's resolution, so the set
    does not depend on ``size``); the others are caps of the head with little anatomy. In file order, EPI first,
    inferior to superior.
    """
    from invsolve.datasets.training_data import NiftiSlices

    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must lie in [0, 1), got {min_fraction!r}")
    data = NiftiSlices([str(p) for p in real_subject_paths()], size, axis=2)
    usable = []
    for i, (f_idx, frame, z) in enumerate(data.items):
        if frame == 0:
            plane = data.volume(f_idx, frame)[:, :, z]
            if (plane > 0.1).sum() >= min_fraction * max(plane.shape) ** 2:
                usable.append(data[i])
    return torch.stack(usable)


class BrainTemplates:
    """The MNI152 maps as one tensor ``(4, Z, Y, X)`` (T1, GM, WM, CSF), masked per split; kept by the caller."""

    def __init__(self) -> None:
        try:
            from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template
        except ImportError as err:  # pragma: no cover - nilearn is a dependency
            raise ImportError("the brain data source needs nilearn (pip install nilearn)") from err
        t1 = load_mni152_template(resolution=1).get_fdata(dtype=np.float32)
        gm = load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
        wm = load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
        brain = (t1 > 0.05).astype(np.float32)
        csf = np.clip(brain - gm - wm, 0.0, 1.0)
        maps = np.stack([t1, gm, wm, csf])  # (4, X, Y, Z)
        self.maps = torch.from_numpy(np.ascontiguousarray(maps.transpose(0, 3, 2, 1)))  # (4, Z, Y, X)
        self.shape_xyz = t1.shape
        self._split_maps: dict[str, torch.Tensor] = {}
        extent = [np.nonzero(brain.any(axis=tuple(d for d in range(3) if d != a)))[0] for a in range(3)]
        self.centre = tuple(float(e.min() + e.max()) / 2 for e in extent)  # (x, y, z) of the brain's bounding box

    def for_split(self, split: str) -> torch.Tensor:
        """The maps with every voxel outside the split's region set to zero, ``(1, 4, Z, Y, X)``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._split_maps:
            maps = self.maps.clone()
            if split == "heldout":
                maps[:, :HELDOUT_Z_MIN] = 0
            else:
                maps[:, TRAIN_Z_MAX:] = 0
            self._split_maps[split] = maps[None]
        return self._split_maps[split]


def split_generator(seed: int, split: str, index: int) -> torch.Generator:
    """The generator of item ``index`` of a split's stream: ``SeedSequence([seed, split key, index])``."""
    state = np.random.SeedSequence([int(seed), _SPLIT_KEYS[split], int(index)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _smooth_field(generator: torch.Generator, channels: int, coarse: int, size: int, std: float) -> torch.Tensor:
    """``(channels, size, size)``: N(0, std^2) values on a ``coarse x coarse`` grid, bicubically interpolated."""
    grid = std * torch.randn((1, channels, coarse, coarse), generator=generator)
    return F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)[0]


def _rotation(axis: int, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = torch.eye(3, dtype=torch.float64)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _plane_axes(plane: str) -> tuple[int, int, int]:
    """``(row axis, column axis, normal axis)`` in ``(x, y, z)`` for a plane (rows top to bottom)."""
    return {"axial": (1, 0, 2), "coronal": (2, 0, 1), "sagittal": (2, 1, 0)}[plane]


def _contrast_weights(generator: torch.Generator, contrast: str) -> tuple[float, list[float]]:
    """``(T1 blend, [GM, WM, CSF] weights)`` of a contrast."""
    u = lambda lo, hi: _uniform(generator, lo, hi)  # noqa: E731
    if contrast == "t1":
        return u(0.0, 0.6), [u(0.55, 0.7), u(0.9, 1.0), u(0.1, 0.25)]
    if contrast == "t2":
        return 0.0, [u(0.5, 0.7), u(0.3, 0.45), u(0.9, 1.0)]
    if contrast == "pd":
        return 0.0, [u(0.85, 1.0), u(0.6, 0.75), u(0.7, 0.9)]
    return 0.0, [u(0.1, 1.0), u(0.1, 1.0), u(0.1, 1.0)]


def brain_slice(templates: BrainTemplates, generator: torch.Generator, size: int = 64, *, split: str = "train",
                plane: str | None = None, contrast: str | None = None) -> torch.Tensor:
    """One brain image ``(1, size, size)`` in ``[0, 1]`` drawn from ``generator`` (see the module docstring)."""
    require_generator(generator)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    maps = templates.for_split(split)
    pick = lambda options: options[int(torch.randint(len(options), (), generator=generator))]  # noqa: E731
    plane = plane or ("axial" if split == "heldout" else pick(PLANES))
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    contrast = contrast or pick(CONTRASTS)
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    row_axis, col_axis, normal = _plane_axes(plane)
    centre = list(templates.centre)
    if split == "heldout":
        centre[2] = _uniform(generator, *HELDOUT_AXIAL_Z)
        tilt = math.radians(3.0)
    else:
        lo, hi = {0: (40.0, 156.0), 1: (45.0, 190.0), 2: (10.0, TRAIN_Z_MAX - 5.0)}[normal]
        centre[normal] = _uniform(generator, lo, hi)
        tilt = math.radians(5.0)
    # in-plane grid (mm) -> affine -> elastic -> voxel coordinates (x, y, z)
    n = 2 * size
    half = FIELD_OF_VIEW_MM / 2
    ticks = torch.linspace(-half, half, n, dtype=torch.float64)
    rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
    points = torch.zeros(n, n, 3, dtype=torch.float64)
    points[..., row_axis] = -rows if row_axis == 2 else rows  # superior at the top of coronal / sagittal images
    points[..., col_axis] = cols
    points = points @ _random_linear(generator, row_axis, col_axis, normal, tilt).T
    points = points + _smooth_field(generator, 3, 5, n, 2.0).permute(1, 2, 0).double()
    sampled = _sample(templates, maps, points + torch.tensor(centre, dtype=torch.float64))[:, 0]
    sampled = F.avg_pool2d(sampled[None], 2)[0]  # (4, size, size)
    mix = _contrast_weights(generator, contrast)  # drawn before the bias field
    return _contrast_image(sampled, mix, _smooth_field(generator, 1, 4, size, 0.15)[0])[None]


def _random_linear(generator: torch.Generator, row_axis: int, col_axis: int, normal: int,
                   tilt: float) -> torch.Tensor:
    """Scale (with anisotropy), shear, in-plane rotation and out-of-plane tilt, ``(3, 3)``."""
    scale = _uniform(generator, 0.9, 1.1)
    stretch = _uniform(generator, 0.95, 1.05)
    shear = _uniform(generator, -0.05, 0.05)
    linear = torch.eye(3, dtype=torch.float64)
    linear[row_axis, row_axis], linear[col_axis, col_axis] = scale * stretch, scale / stretch
    linear[row_axis, col_axis] = shear
    linear = _rotation(normal, math.radians(_uniform(generator, -15, 15))) @ linear
    row_tilt = _rotation(row_axis, _uniform(generator, -tilt, tilt))
    return row_tilt @ _rotation(col_axis, _uniform(generator, -tilt, tilt)) @ linear


def _sample(templates: BrainTemplates, maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The maps (trilinear, zero outside) at voxel coordinates ``points (D, H, W, 3)`` (x, y, z): ``(4, D, H, W)``."""
    x_dim, y_dim, z_dim = templates.shape_xyz
    norm = torch.stack([2 * points[..., 0] / (x_dim - 1) - 1, 2 * points[..., 1] / (y_dim - 1) - 1,
                        2 * points[..., 2] / (z_dim - 1) - 1], dim=-1).float()
    if norm.dim() == 3:
        norm = norm[None]
    return F.grid_sample(maps, norm[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def _contrast_image(sampled: torch.Tensor, mix: tuple[float, list[float]], bias: torch.Tensor) -> torch.Tensor:
    """Tissue maps ``(4, ...)`` -> one image in ``[0, 1]`` of the contrast ``mix`` (:func:`_contrast_weights`),
    times the bias field ``exp(bias)``."""
    blend, weights = mix
    image = blend * sampled[0] + (1 - blend) * sum(w * sampled[k + 1] for k, w in enumerate(weights))
    image = image * torch.exp(bias)
    top = image.max()
    return (image / top if top > 0 else image).float()


def brain_volume(templates: BrainTemplates, generator: torch.Generator, size: int = 64, depth: int = 64, *,
                 spacing: float | None = None, split: str = "train", contrast: str | None = None,
                 centre_z: float | None = None) -> torch.Tensor:
    """One brain volume ``(1, depth, size, size)`` in ``[0, 1]`` (axial slices, inferior to superior).

    In-plane as :func:`brain_slice` (200 mm field of view); ``spacing`` is the slice distance in mm (default: the
    in-plane pixel size, isotropic). The slab is centred in the split's region: ``train`` / ``tuning`` volumes lie
    below ``z = TRAIN_Z_MAX``, ``heldout`` volumes inside the band (``depth * spacing`` must fit its 64 mm; the
    brain occupies its lower 30 mm). Affine as for slices (tilt 3 degrees), a 3D elastic field (4 x 4 x 4 grid of
    N(0, 2 mm)), one contrast and one 3D bias field per volume. ``centre_z`` (template voxels) places the slab
    instead of the drawn centre (the draw is still made, so the rest of the volume is the same); the slab must
    lie inside the split's region.
    """
    require_generator(generator)
    for name, value in (("size", size), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 4:
            raise ValueError(f"{name} must be an integer >= 4, got {value!r}")
    maps = templates.for_split(split)
    spacing = float(spacing) if spacing is not None else FIELD_OF_VIEW_MM / size
    thickness = depth * spacing
    z_lo, z_hi = (HELDOUT_Z_MIN, templates.shape_xyz[2]) if split == "heldout" else (0, TRAIN_Z_MAX)
    if thickness > z_hi - z_lo:
        raise ValueError(f"depth * spacing = {thickness:g} mm does not fit the {split} region ({z_hi - z_lo} mm)")
    contrast = contrast or CONTRASTS[int(torch.randint(len(CONTRASTS), (), generator=generator))]
    centre = list(templates.centre)
    centre[2] = _uniform(generator, z_lo + thickness / 2, max(z_lo + thickness / 2, min(z_hi, 150) - thickness / 2))
    if centre_z is not None:
        if not z_lo + thickness / 2 <= centre_z <= z_hi - thickness / 2:
            raise ValueError(f"centre_z = {centre_z:g} puts the {thickness:g} mm slab outside the {split} region "
                             f"[{z_lo}, {z_hi}]")
        centre[2] = float(centre_z)
    half = FIELD_OF_VIEW_MM / 2
    ticks = torch.linspace(-half, half, 2 * size, dtype=torch.float64)
    heights = (torch.arange(depth, dtype=torch.float64) - (depth - 1) / 2) * spacing
    z, rows, cols = torch.meshgrid(heights, ticks, ticks, indexing="ij")
    points = torch.stack([cols, rows, z], dim=-1)  # x right, y along rows, z up
    points = points @ _random_linear(generator, 1, 0, 2, math.radians(3.0)).T
    field = 2.0 * torch.randn((1, 3, 4, 4, 4), generator=generator)
    field = F.interpolate(field, size=(depth, 2 * size, 2 * size), mode="trilinear", align_corners=True)[0]
    points = points + field.permute(1, 2, 3, 0).double() + torch.tensor(centre, dtype=torch.float64)
    sampled = F.avg_pool2d(_sample(templates, maps, points), 2)  # (4, depth, size, size)
    mix = _contrast_weights(generator, contrast)
    bias = F.interpolate(0.15 * torch.randn((1, 1, 3, 4, 4), generator=generator), size=(depth, size, size),
                         mode="trilinear", align_corners=True)[0, 0]
    return _contrast_image(sampled, mix, bias)[None]


class BrainVolumeSlices(Dataset):
    """Axial slices of ``n_volumes`` seeded training-split brain volumes (:func:`brain_volume`): the slice prior
    of DiffusionMBIR-style 3D reconstruction is trained on them, as the paper trains its prior on the slices of
    training volumes.

    Volume ``v`` is drawn from ``SeedSequence([seed, 0, v])`` (the ``train`` key of :class:`BrainSlices`), with
    ``depth`` slices ``spacing`` mm apart; items are ordered volume by volume. Volumes are cached (all of them by
    default: 500 volumes of 32 x 64 x 64 take 260 MB), so random access costs one volume draw per volume.
    Empty slices (no pixel above 0.05) are kept: the prior must know the background too.
    """

    channels = 1
    value_range = (0.0, 1.0)

    def __init__(self, size: int = 64, *, n_volumes: int = 500, depth: int = 32, spacing: float = 1.0, seed: int = 0, cache_volumes: int | None = None,
                 templates: BrainTemplates | None = None) -> None:
        for name, value in (("n_volumes", n_volumes), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
        if not 0 < spacing * depth <= TRAIN_Z_MAX:
            raise ValueError(f"depth * spacing must lie in (0, {TRAIN_Z_MAX}] mm, got {depth} * {spacing}")
        self.size, self.n_volumes, self.depth, self.spacing, self.seed = size, n_volumes, depth, float(spacing), seed
        self.templates = templates or BrainTemplates()
        self._cache_size = n_volumes if cache_volumes is None else max(1, int(cache_volumes))
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.n_volumes * self.depth

    def volume(self, v: int) -> torch.Tensor:
        """Training volume ``v``, ``(1, depth, size, size)``."""
        if v not in self._cache:
            g = split_generator(self.seed, "train", v)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[v] = brain_volume(self.templates, g, self.size, self.depth, spacing=self.spacing,
                                          split="train")
        return self._cache[v]

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices")
        v, k = divmod(index, self.depth)
        return self.volume(v)[:, k].contiguous()


class BrainSlices(Dataset):
    """An infinite-like seeded stream of brain images ``(1, size, size)`` of one split (:func:`brain_slice`).

    Item ``i`` is drawn from its own generator (``seed``, the split and ``i`` hashed together), so any order of
    access sees the same images and the splits' streams never share an item.
    """

    channels = 1
    value_range = (0.0, 1.0)

    def __init__(self, size: int = 64, *, split: str = "train", seed: int = 0, length: int = 2**32,
                 planes: Sequence[str] | None = None, templates: BrainTemplates | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
        if planes is not None and any(p not in PLANES for p in planes):
            raise ValueError(f"planes must be a subset of {PLANES}, got {planes!r}")
        self.size, self.split, self.seed, self.length = size, split, seed, length
        self.planes = tuple(planes) if planes is not None else None
        self.templates = templates or BrainTemplates()

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> torch.Generator:
        return split_generator(self.seed, self.split, index)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a stream of length {self.length}")
        g = self.generator(index)
        plane = None
        if self.planes is not None:
            plane = self.planes[int(torch.randint(len(self.planes), (), generator=g))]
        return brain_slice(self.templates, g, self.size, split=self.split, plane=plane)
