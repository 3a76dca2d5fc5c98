"""Metrics: image quality (PSNR, SSIM, NMSE as fastMRI defines them) and distances between sample sets."""

from invsolve.metrics.image import nmse, psnr, ssim

__all__ = ["nmse", "psnr", "ssim"]
