"""invsolve: imaging inverse problems with diffusion priors and posterior sampling.

Conventions (SPEC section 3): one EDM / variance-exploding sigma parameterization
(``x_sigma = x0 + sigma * n``); complex data as two real channels (see
:mod:`invsolve.operators`); every random draw takes an explicit ``torch.Generator``.
"""

from invsolve import _compat  # noqa: F401  (must run before anything imports deepinv)
from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise, NoiseModel, PoissonNoise
from invsolve.priors import DenoiserPrior, Prior, VPPrior
from invsolve.samplers import Posterior, SamplerOutput, StepInfo

__version__ = "0.1.0"

__all__ = [
    "DenoiserPrior",
    "GaussianNoise",
    "Measurement",
    "NoiseModel",
    "PoissonNoise",
    "Posterior",
    "Prior",
    "SamplerOutput",
    "StepInfo",
    "VPPrior",
    "__version__",
]
