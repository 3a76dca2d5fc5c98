"""Posterior samplers: one module each, all with the signature
``sampler(measurement, prior, *, steps/sigmas, n_samples, generator, callback, **hyper) -> SamplerOutput``."""

from invsolve.samplers.output import Posterior, SamplerOutput, StepInfo, weighted_moments

__all__ = ["Posterior", "SamplerOutput", "StepInfo", "weighted_moments"]
