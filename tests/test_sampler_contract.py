"""One contract over every declared sampler, as the operator contract runs over every operator.

Each declaration (:func:`invsolve.samplers.declarations`) is run on a tiny problem that meets its needs:
finite outputs of the declared shapes, the same result under the same seed, and a clear refusal, naming what
is missing, of a problem that lacks each of its needs. A sampler function without a declaration fails here.
"""

from __future__ import annotations

import importlib
import math
import inspect
import pkgutil

import pytest
import torch

import invsolve.samplers as samplers_package
from invsolve import GaussianNoise, Measurement, PoissonNoise
from invsolve.acquisition import ActiveMeasurement, PixelAcquisition
from invsolve.operators import FourierMagnitude, Inpainting, ParallelBeamCT3D, sparse_view_angles
from invsolve.priors import DenoiserPrior, GaussianPrior
from invsolve.samplers import Need, declarations

N = 8  # image side
DEPTH = 3
DECLARATIONS = declarations()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_prior(shape=(1, N, N)) -> GaussianPrior:
    d = shape[0] * shape[1] * shape[2]
    return GaussianPrior(torch.full((d,), 0.5), torch.tensor(0.05), shape=shape)


def image_problem(*, linear=True, gaussian=True, exact_prior=True, exact_model=True):
    truth = torch.rand(1, 1, N, N, generator=gen(1))
    if linear:
        op = Inpainting.random((1, N, N), 0.5, gen(2))
        clean = op.A(truth)
    else:
        op = FourierMagnitude((1, N, N), oversampling=2.0)
        clean = op.A(truth)
    noise = GaussianNoise(0.05, model_is_exact=exact_model) if gaussian else PoissonNoise(50.0)
    y = noise.sample(clean, gen(3)) if gaussian else noise.sample(clean.abs(), gen(3))
    prior = gaussian_prior()
    if not exact_prior:
        prior = DenoiserPrior(prior.denoise, prior.shape, sigma_min=prior.sigma_min, sigma_max=prior.sigma_max)
    return Measurement(op, noise, y), prior


def active_problem():
    acquisition = PixelAcquisition((1, N, N))
    initial = torch.zeros(N * N, dtype=torch.bool)
    initial[::4] = True
    truth = torch.rand(1, 1, N, N, generator=gen(1))
    active = ActiveMeasurement.simulate(acquisition, truth, GaussianNoise(0.05), initial, gen(3), budget=4)
    return active, gaussian_prior()


def volume_problem():
    op = ParallelBeamCT3D(sparse_view_angles(4), (DEPTH, N, N))
    truth = torch.rand(1, 1, DEPTH, N, N, generator=gen(1))
    noise = GaussianNoise(0.05)
    return Measurement(op, noise, noise.sample(op.A(truth), gen(3))), gaussian_prior()


def latent_problem():
    """The image problem with a latent prior: a 4-d Gaussian latent through a linear decoder to N x N images."""
    from invsolve.priors.latent import LatentPrior

    measurement, _ = image_problem()
    weight = torch.randn(N * N, 4, generator=gen(5)) * 0.2
    latent = GaussianPrior(torch.zeros(4), torch.tensor(1.0), shape=(4,))
    return measurement, LatentPrior.linear(latent, weight, torch.full((N * N,), 0.5), (1, N, N))


def token_problem():
    """The image problem with a token prior: 4 positions of 3 codes (an exact table) through a linear decoder."""
    from invsolve.priors.tokens import MaskedTokenPrior

    measurement, _ = image_problem()
    table = torch.rand(3, 3, 3, 3, generator=gen(6))
    weight = torch.randn(N * N, 4 * 2, generator=gen(7)) * 0.2
    return measurement, MaskedTokenPrior.tabular(table, torch.randn(3, 2, generator=gen(8)), weight,
                                                 torch.full((N * N,), 0.5), (1, N, N))


def problem_meeting(needs: frozenset[Need]):
    if Need.TOKEN_PRIOR in needs:
        return token_problem()
    if Need.LATENT_PRIOR in needs:
        return latent_problem()
    if Need.ACTIVE in needs:
        return active_problem()
    if Need.VOLUME in needs:
        return volume_problem()
    return image_problem()


def lacking(need: Need):
    """A problem lacking ``need`` (and meeting the needs that do not depend on it), or None."""
    if need is Need.LINEAR:
        return image_problem(linear=False)
    if need is Need.GAUSSIAN_NOISE:
        return image_problem(gaussian=False)
    if need in (Need.ACTIVE, Need.VOLUME):
        return image_problem()
    if need is Need.EXACT_PRIOR:
        return image_problem(exact_prior=False)
    if need is Need.EXACT_MODEL:
        return image_problem(exact_model=False)
    if need in (Need.LATENT_PRIOR, Need.TOKEN_PRIOR):
        return image_problem()  # a plain prior over images
    return None  # every linear operator has an SVD


def run(decl, problem, seed=0):
    measurement, prior = problem
    n = max(2, decl.min_samples)
    return decl.run(measurement, prior, steps=3, n_samples=n, generator=gen(seed))


def test_every_sampler_function_is_declared():
    undeclared = []
    for info in pkgutil.iter_modules(samplers_package.__path__):
        if info.name.startswith("_"):
            continue  # private helpers (the common prelude)
        module = importlib.import_module(f"invsolve.samplers.{info.name}")
        declared = getattr(module, "DECLARATION", None)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            params = list(inspect.signature(fn).parameters)
            if params[:2] == ["measurement", "prior"] and "generator" in params and "n_samples" in params:
                if declared is None or declared.function is not fn:
                    undeclared.append(f"{module.__name__}.{name}")
    assert not undeclared, f"sampler functions without a DECLARATION: {undeclared}"
    assert set(DECLARATIONS) >= {"dps", "pigdm", "ddrm", "red-diff", "afes", "fkc", "tds", "ads", "mbir3d"}


@pytest.mark.parametrize("name", list(DECLARATIONS))
def test_declared_sampler_runs_finite_with_declared_shapes_and_is_reproducible(name):
    decl = DECLARATIONS[name]
    problem = problem_meeting(decl.needs)
    out = run(decl, problem)
    measurement = problem[0]
    n = max(2, decl.min_samples)
    assert tuple(out.samples.shape) == (n, 1, *measurement.x_shape)
    assert torch.isfinite(out.samples).all() and torch.isfinite(out.mean).all() and torch.isfinite(out.std).all()
    assert tuple(out.mean.shape) == (1, *measurement.x_shape) and out.nfe >= 0
    again = run(decl, problem_meeting(decl.needs))
    assert torch.equal(out.samples, again.samples), "same seed, different result"
    assert decl.default_steps >= 1 and decl.label


@pytest.mark.parametrize("name, need", [(n, need) for n, d in DECLARATIONS.items() for need in sorted(d.needs)])
def test_declared_sampler_refuses_a_problem_lacking_a_need(name, need):
    problem = lacking(need)
    if problem is None:
        pytest.skip(f"no tiny problem lacks {need.name}")
    with pytest.raises((ValueError, TypeError)) as err:
        run(DECLARATIONS[name], problem)
    assert need.value.split(" (")[0] in str(err.value) or "volume" in str(err.value)


@pytest.mark.parametrize("name", [n for n, d in DECLARATIONS.items() if Need.ACTIVE not in d.needs])
def test_samplers_for_fixed_measurements_refuse_an_active_acquisition(name):
    with pytest.raises(ValueError, match="active acquisition"):
        run(DECLARATIONS[name], active_problem())


@pytest.mark.parametrize("name", [n for n, d in DECLARATIONS.items() if Need.LATENT_PRIOR not in d.needs])
def test_image_samplers_refuse_a_latent_prior(name):
    if DECLARATIONS[name].needs & {Need.ACTIVE, Need.VOLUME, Need.EXACT_PRIOR, Need.TOKEN_PRIOR}:
        pytest.skip("refuses the problem for another need first")
    with pytest.raises(ValueError, match="diffuses the latents of an autoencoder"):
        run(DECLARATIONS[name], latent_problem())


@pytest.mark.parametrize("name", [n for n, d in DECLARATIONS.items() if Need.TOKEN_PRIOR not in d.needs])
def test_continuous_samplers_refuse_a_token_prior(name):
    if DECLARATIONS[name].needs & {Need.ACTIVE, Need.VOLUME, Need.EXACT_PRIOR, Need.LATENT_PRIOR}:
        pytest.skip("refuses the problem for another need first")
    with pytest.raises(ValueError, match="discrete tokens of a VQ tokenizer"):
        run(DECLARATIONS[name], token_problem())


@pytest.mark.parametrize("name", [n for n, d in DECLARATIONS.items() if Need.VOLUME not in d.needs])
def test_image_samplers_refuse_a_volume(name):
    if DECLARATIONS[name].needs & {Need.ACTIVE, Need.LATENT_PRIOR, Need.TOKEN_PRIOR}:
        pytest.skip("refuses the problem for another need first")
    with pytest.raises(ValueError, match="reconstructs images"):
        run(DECLARATIONS[name], volume_problem())


@pytest.mark.parametrize("name", list(DECLARATIONS))
def test_unknown_settings_are_refused_before_work(name):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['not_a_setting'\]"):
        DECLARATIONS[name].run(*problem_meeting(DECLARATIONS[name].needs), n_samples=2, generator=gen(0),
                               not_a_setting=1)


@pytest.mark.parametrize("name", list(DECLARATIONS))
def test_every_numeric_setting_has_a_range_checked_before_work(name):
    decl = DECLARATIONS[name]
    for key in decl.settings():
        default = decl.default(key)
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric or key in decl.ranges:
            assert key in decl.ranges, f"{name}: numeric setting {key!r} has no declared range"
            allowed = decl.ranges[key]
            assert default is None or allowed.admits(default), f"{name}: the default of {key} is out of its range"
            for bad in (math.nan, allowed.low - 1, -math.inf, "abc", True):
                with pytest.raises(ValueError, match=f"{key} must be"):
                    decl.check_settings({key: bad})
