"""Metrics: image quality (PSNR, SSIM, NMSE as fastMRI defines them) and distances between sample sets."""

from invsolve.metrics.distributions import sliced_wasserstein, sliced_wasserstein_floor, wasserstein_1d
from invsolve.metrics.image import nmse, psnr, ssim
from invsolve.metrics.summary import format_interval, mean_confidence_interval, provenance, publish
from invsolve.metrics.uncertainty import (
    central_coverage, iid_interval_coverage, interval_coverage, pit_histogram, randomized_pit, standardized_errors,
    uniformity_distance, weighted_quantile)

__all__ = ["format_interval", "provenance", "publish", "iid_interval_coverage", "interval_coverage", "mean_confidence_interval", "nmse", "psnr", "sliced_wasserstein", "sliced_wasserstein_floor", "ssim", "wasserstein_1d",
           "weighted_quantile", "central_coverage", "pit_histogram", "randomized_pit", "standardized_errors",
           "uniformity_distance"]
