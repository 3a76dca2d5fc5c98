"""The fastMRI submission layout and its scoring, with fastMRI's own metric functions.

A submission is one file per input volume, same name, dataset ``reconstruction`` float32
``(slices, h, w)``; ``python -m fastmri.evaluate`` centre-crops target and reconstruction to
``(w, w)`` (``w`` = the target's last axis) and reports NMSE, PSNR, SSIM (and MSE) per volume,
printing ``mean +/- 2 std`` over volumes. :func:`volume_metrics` calls fastMRI's own metric
functions, so the numbers are fastMRI's (Zbontar et al., arXiv:1811.08839, 2018).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from invsolve._atomic import atomic_h5
from invsolve.datasets.fastmri_files import TARGET_KEYS, PathLike, as_numpy, open_h5, refuse_existing

__all__ = ["evaluate_folder", "volume_metrics", "write_submission"]


def write_submission(folder: PathLike, name: str, reconstruction: np.ndarray | torch.Tensor, *,
                     overwrite: bool = False) -> Path:
    """Write ``reconstruction`` ``(S, h, w)`` as float32 dataset ``reconstruction`` in ``folder/name`` (atomic)."""
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".h5"):
        raise ValueError(f"name must be a bare file name ending in .h5 (the input file's name), got {name!r}")
    rec = as_numpy("reconstruction", reconstruction)
    if rec.dtype.kind != "f" or rec.ndim != 3:
        raise ValueError(f"reconstruction must be real (slices, h, w), got {rec.dtype} {rec.shape}")
    path = Path(folder) / name
    refuse_existing(path, overwrite)
    with atomic_h5(path) as f:
        f.create_dataset("reconstruction", data=rec.astype(np.float32))
    return path


def volume_metrics(target: np.ndarray | torch.Tensor, reconstruction: np.ndarray | torch.Tensor) -> dict[str, float]:
    """fastMRI's per-volume metrics (``fastmri.evaluate.METRIC_FUNCS``: MSE, NMSE, PSNR, SSIM).

    Both ``(S, h, w)`` arrays are centre-cropped to ``(w, w)`` (``w`` = target's last axis) with
    ``fastmri.data.transforms.center_crop`` first, exactly as ``fastmri.evaluate.evaluate`` does.
    """
    from fastmri.data.transforms import center_crop
    from fastmri.evaluate import METRIC_FUNCS

    tgt, rec = as_numpy("target", target), as_numpy("reconstruction", reconstruction)
    if tgt.ndim != 3 or rec.ndim != 3:
        raise ValueError(f"target and reconstruction must be (slices, h, w), got {tgt.shape} and {rec.shape}")
    crop = (tgt.shape[-1], tgt.shape[-1])
    try:
        tgt, rec = center_crop(tgt, crop), center_crop(rec, crop)
    except ValueError as err:
        raise ValueError(f"cannot centre-crop target {tgt.shape} and reconstruction {rec.shape} to {crop}") from err
    if tgt.shape != rec.shape:
        raise ValueError(f"target and reconstruction differ after cropping: {tgt.shape} vs {rec.shape}")
    return {name: float(np.squeeze(func(tgt, rec))) for name, func in METRIC_FUNCS.items()}


def evaluate_folder(target_folder: PathLike, predictions_folder: PathLike, challenge: str, *,
                    acquisition: str | None = None, acceleration: int | None = None) -> dict[str, dict[str, float]]:
    """Score a submission as ``python -m fastmri.evaluate`` does: ``{file name: metrics, "mean": ..., "std": ...}``.

    Every (non-hidden) file of ``target_folder`` is a target volume; its prediction is
    ``predictions_folder/<name>``. ``std`` is the sample standard deviation (fastMRI prints
    ``mean +/- 2 std``; with one volume fastMRI fails, here std is NaN).
    """
    if challenge not in TARGET_KEYS:
        raise ValueError(f"challenge must be 'multicoil' or 'singlecoil', got {challenge!r}")
    key, target_folder = TARGET_KEYS[challenge], Path(target_folder)
    if not target_folder.is_dir():
        raise FileNotFoundError(f"target_folder {target_folder} is not a folder")
    results: dict[str, dict[str, float]] = {}
    for tgt_path in sorted(p for p in target_folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        pred_path = Path(predictions_folder) / tgt_path.name
        with open_h5(tgt_path) as t:
            if (acquisition and t.attrs.get("acquisition") != acquisition) or (
                    acceleration and t.attrs.get("acceleration") != acceleration):
                continue
            if key not in t:
                raise ValueError(f"{tgt_path}: no {key!r} dataset (keys present: {sorted(t.keys())})")
            target = t[key][()]
        with open_h5(pred_path) as p:
            if "reconstruction" not in p:
                raise ValueError(f"{pred_path}: no 'reconstruction' dataset (keys present: {sorted(p.keys())})")
            results[tgt_path.name] = volume_metrics(target, p["reconstruction"][()])
    if not results:
        raise ValueError(f"no target volumes to evaluate in {target_folder}")
    table = np.array([list(m.values()) for m in results.values()])
    names = list(next(iter(results.values())))
    std = table.std(axis=0, ddof=1) if len(table) > 1 else np.full(len(names), np.nan)
    return {**results, "mean": dict(zip(names, table.mean(axis=0).tolist())), "std": dict(zip(names, std.tolist()))}


# -- resampling to a prior's grid ----------------------------------------------------------
