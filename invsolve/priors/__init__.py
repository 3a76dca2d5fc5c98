"""Priors in the EDM sigma convention and adapters from other parameterizations."""

from invsolve.priors.base import DenoiserPrior, Prior, sigma_like
from invsolve.priors.gaussian import GaussianMixturePrior, GaussianPrior
from invsolve.priors.vp import VPPrior, linear_beta_alphas_cumprod, sigma_to_timestep, vp_sigmas

__all__ = [
    "Prior",
    "DenoiserPrior",
    "GaussianMixturePrior",
    "GaussianPrior",
    "VPPrior",
    "linear_beta_alphas_cumprod",
    "sigma_like",
    "sigma_to_timestep",
    "vp_sigmas",
]
