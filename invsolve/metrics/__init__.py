"""Metrics: image quality (PSNR, SSIM, NMSE as fastMRI defines them) and distances between sample sets."""

from invsolve.metrics.distributions import sliced_wasserstein, sliced_wasserstein_floor, wasserstein_1d
from invsolve.metrics.image import nmse, psnr, ssim

__all__ = ["nmse", "psnr", "sliced_wasserstein", "sliced_wasserstein_floor", "ssim", "wasserstein_1d"]
