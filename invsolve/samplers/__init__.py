"""Posterior samplers: one module each, all with the signature
``sampler(measurement, prior, *, steps/sigmas, n_samples, generator, callback, **settings) -> SamplerOutput``.

Each sampler module declares itself (``DECLARATION``, :mod:`invsolve.samplers.declaration`): its one string
name, default steps and needs. :func:`declarations` finds them all; the imports below are for convenience.
"""

from invsolve.samplers.ads import ads
from invsolve.samplers.afes import afes
from invsolve.samplers.aps import aps
from invsolve.samplers.best_of_n import best_of_n
from invsolve.samplers.daps import daps
from invsolve.samplers.ddrm import ddrm
from invsolve.samplers.dds3d import dds3d
from invsolve.samplers.diffpir import diffpir
from invsolve.samplers.declaration import Need, SamplerDeclaration, declaration, declarations
from invsolve.samplers.dps import dps
from invsolve.samplers.edm import edm_sample, edm_sigmas, unconditional
from invsolve.samplers.exact import exact
from invsolve.samplers.fkc import fkc
from invsolve.samplers.latent_dps import latent_dps
from invsolve.samplers.mbir3d import mbir3d
from invsolve.samplers.output import Posterior, SamplerOutput, StepInfo, weighted_moments
from invsolve.samplers.pigdm import pigdm
from invsolve.samplers.psld import psld
from invsolve.samplers.particles import ParticleWeights, WeightDegeneracyError
from invsolve.samplers.red_diff import red_diff
from invsolve.samplers.stsl import stsl
from invsolve.samplers.tds import tds

__all__ = [
    "aps",
    "best_of_n",
    "Need",
    "ParticleWeights",
    "Posterior",
    "SamplerDeclaration",
    "SamplerOutput",
    "StepInfo",
    "WeightDegeneracyError",
    "ads",
    "afes",
    "daps",
    "ddrm",
    "dds3d",
    "declaration",
    "declarations",
    "diffpir",
    "dps",
    "edm_sample",
    "edm_sigmas",
    "exact",
    "fkc",
    "latent_dps",
    "mbir3d",
    "pigdm",
    "psld",
    "red_diff",
    "stsl",
    "tds",
    "unconditional",
]
