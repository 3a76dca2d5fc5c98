"""Priors in the EDM sigma convention and adapters from other parameterizations."""

from invsolve.priors.base import DenoiserPrior, Prior, sigma_like
from invsolve.priors.default import load_brain_prior, load_default_prior, load_ellipsoid_slice_prior, load_shipped_prior
from invsolve.priors.edm import EDMDenoiser, EDMPrior, build_network
from invsolve.priors.gaussian import GaussianMixturePrior, GaussianPrior
from invsolve.priors.latent import LatentPrior, exact_latent_posterior, load_diffusers_latent
from invsolve.priors.loaders import load_deepinv_prior, load_diffusers_unet, load_guided_diffusion
from invsolve.priors.rescale import RescaledPrior
from invsolve.priors.slice_stack import SliceStackPrior
from invsolve.priors.vp import VPPrior, linear_beta_alphas_cumprod, sigma_to_timestep, vp_sigmas

__all__ = [
    "SliceStackPrior",
    "Prior",
    "DenoiserPrior",
    "EDMDenoiser",
    "EDMPrior",
    "GaussianMixturePrior",
    "GaussianPrior",
    "LatentPrior",
    "RescaledPrior",
    "VPPrior",
    "build_network",
    "exact_latent_posterior",
    "linear_beta_alphas_cumprod",
    "load_brain_prior",
    "load_deepinv_prior",
    "load_diffusers_latent",
    "load_default_prior",
    "load_ellipsoid_slice_prior",
    "load_shipped_prior",
    "load_diffusers_unet",
    "load_guided_diffusion",
    "sigma_like",
    "sigma_to_timestep",
    "vp_sigmas",
]
