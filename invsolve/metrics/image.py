"""Image-quality metrics, defined exactly as fastMRI's evaluation does (``fastmri.evaluate``).

fastMRI computes, per volume (here: per image or volume given as an array):
NMSE = ||gt - pred||^2 / ||gt||^2; PSNR with ``data_range = gt.max()``
(unless given); SSIM with scikit-image, ``data_range = gt.max()``, averaged
over slices. We accept torch tensors or numpy arrays and compute in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _as_numpy(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")
    return a.astype(np.float64)


def _pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = _as_numpy(gt, "gt"), _as_numpy(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same shape, got {gt.shape} and {pred.shape}")
    return gt, pred


def nmse(gt, pred) -> float:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2``."""
    gt, pred = _pair(gt, pred)
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt, pred, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``data_range`` defaulting to ``gt.max()`` (fastMRI)."""
    gt, pred = _pair(gt, pred)
    rng = float(gt.max()) if data_range is None else float(data_range)
    return float(peak_signal_noise_ratio(gt, pred, data_range=rng))


def ssim(gt, pred, data_range: float | None = None) -> float:
    """Structural similarity; a 2D image ``(H, W)``, or the mean over the leading axis of a stack ``(S, H, W)``.

    Leading singleton axes are squeezed, so ``(1, H, W)`` and ``(1, 1, H, W)`` are single images.
    """
    gt, pred = _pair(gt, pred)
    while gt.ndim > 2 and gt.shape[0] == 1:
        gt, pred = gt[0], pred[0]
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if gt.ndim != 3:
        raise ValueError(f"ssim expects (H, W) or (S, H, W) after squeezing, got shape {gt.shape}")
    rng = float(gt.max()) if data_range is None else float(data_range)
    return float(np.mean([structural_similarity(g, p, data_range=rng) for g, p in zip(gt, pred)]))
