"""Sampler declarations: each sampler module says once what it is called, how many steps it takes by
default, what it needs, and how its inputs are prepared.

A sampler module ends with::

    DECLARATION = SamplerDeclaration("dps", dps, default_steps=100, label="DPS", demo_position=1)

and is found by :func:`declarations`, which reads every module of :mod:`invsolve.samplers`. That is the only
place a string name is bound to a sampler: the command line, study configs, the demo and the sampler contract
test read the declarations, so a new sampler is one module (plus its test).

:meth:`SamplerDeclaration.run` is how the run layer calls a sampler: it refuses inputs that lack a declared
need (with a message naming what is missing), runs the sampler's preparation (e.g. ``mbir3d`` wraps a 2D
prior into a :class:`~invsolve.priors.slice_stack.SliceStackPrior`), then calls the function.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from invsolve.acquisition import ActiveMeasurement
from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise
from invsolve.operators.base import LinearOperator
from invsolve.priors.base import Prior
from invsolve.samplers.output import SamplerOutput

#: Arguments every sampler takes and the run layer supplies; never settings.
COMMON_ARGUMENTS = ("measurement", "prior", "steps", "sigmas", "n_samples", "generator", "callback")


class Need(str, Enum):
    """What a sampler can require of its inputs (the value is how an error message names it)."""

    LINEAR = "a linear operator (with an adjoint)"
    SVD = "an operator with an SVD (operator.svd())"
    GAUSSIAN_NOISE = "Gaussian measurement noise"
    EXACT_MODEL = ("a forward model exact up to the noise (measured k-space through estimated coil maps is not: there "
                   "the real image misfits the data by ~19 sigma_y at the truth, and a sampler weighing the data by "
                   "1 / sigma_y^2 ends below zero-filled; use dps or red-diff)")
    ACTIVE = "an active acquisition (an ActiveMeasurement: the sampler chooses what to measure)"
    VOLUME = "a volume (B, C, D, H, W) measured by a 3D operator, with a 2D prior over its slices"
    EXACT_PRIOR = "a Gaussian or Gaussian-mixture prior (closed-form posterior)"
    LATENT_PRIOR = "a latent prior (an autoencoder with a prior over its latents)"
    TOKEN_PRIOR = "a masked-token prior (a VQ tokenizer with a masked-token model)"


def _operator(measurement: Measurement | ActiveMeasurement):
    if isinstance(measurement, ActiveMeasurement):
        return measurement.acquisition.operator(measurement.initial)
    return measurement.operator


def _x_shape(measurement: Measurement | ActiveMeasurement) -> tuple[int, ...]:
    return tuple(measurement.x_shape)


def _is_volume_pair(measurement, prior: Prior) -> bool:
    """A 3D measurement ``(C, D, H, W)`` and a 2D prior ``(C, H, W)`` (or a prior over such volumes)."""
    x_shape = _x_shape(measurement)
    return len(x_shape) == 4 and (len(prior.shape) == 3 or tuple(prior.shape) == x_shape)


def _has_need(need: Need, measurement, prior: Prior) -> bool:
    if need is Need.LINEAR:
        return isinstance(_operator(measurement), LinearOperator)
    if need is Need.SVD:
        return callable(getattr(_operator(measurement), "svd", None))
    if need is Need.GAUSSIAN_NOISE:
        return isinstance(measurement.noise, GaussianNoise)
    if need is Need.EXACT_MODEL:
        return measurement.noise.model_is_exact
    if need is Need.ACTIVE:
        return isinstance(measurement, ActiveMeasurement)
    if need is Need.VOLUME:
        return _is_volume_pair(measurement, prior)
    if need is Need.EXACT_PRIOR:
        from invsolve.priors.gaussian import GaussianMixturePrior

        return isinstance(prior, GaussianMixturePrior)
    if need is Need.LATENT_PRIOR:
        return callable(getattr(prior, "encode", None)) and callable(getattr(prior, "decode", None))
    return callable(getattr(prior, "token_logits", None))  # TOKEN_PRIOR


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting: ``low <= value <= high`` (``open_low`` / ``open_high`` exclude the
    ends); ``integer`` settings take ints only. Infinite values pass only when ``high`` is ``inf`` and closed."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    words: tuple[str, ...] = ()  # non-numeric values also accepted (e.g. data_weight="likelihood")

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        left = "(" if self.open_low else "["
        right = ")" if self.open_high or self.high == math.inf and not self.integer else "]"
        words = "".join(f" or {w!r}" for w in self.words)
        return f"{kind} in {left}{self.low:g}, {self.high:g}{right}{words}"

    def admits(self, value: Any) -> bool:
        if isinstance(value, str) and value in self.words:
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if math.isnan(value) or (math.isinf(value) and not (value > 0 and self.high == math.inf
                                                             and not self.open_high and not self.integer)):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below


#: Ranges shared by many samplers.
POSITIVE = Range(0, open_low=True, open_high=True)
NONNEGATIVE = Range(0, open_high=True)
UNIT = Range(0, 1)
RHO = POSITIVE


def missing_needs(needs: frozenset[Need], measurement, prior: Prior) -> list[Need]:
    """The declared needs that ``(measurement, prior)`` does not meet, in declaration order of :class:`Need`."""
    return [need for need in Need if need in needs and not _has_need(need, measurement, prior)]


@dataclass(frozen=True)
class SamplerDeclaration:
    """A sampler as the rest of the library sees it.

    Attributes:
        name: the one string name (command line, study configs), e.g. ``"red-diff"``.
        function: ``function(measurement, prior, *, steps, n_samples, generator, callback, **settings)``.
        default_steps: steps when a run names none.
        needs: what the inputs must offer (:class:`Need`); anything else is refused before work starts.
        label: the display name in tables and figures (default: ``name``).
        demo_position: where ``invsolve demo`` runs it among the others (``None``: the demo does not).
        min_samples: the fewest samples / particles it can run with.
        prepare: ``prepare(measurement, prior, **preparation_settings) -> prior`` for samplers whose prior
            is built from the one given (``mbir3d``: the 2D prior over the volume's slices).
        preparation_settings: the settings ``prepare`` takes (not passed to ``function``).
        ranges: the valid values of numeric settings (:class:`Range`), checked before any work; a setting whose
            default is ``None`` may also be given as ``None``.
    """

    name: str
    function: Callable[..., SamplerOutput]
    default_steps: int
    needs: frozenset[Need] = frozenset()
    label: str = ""
    demo_position: int | None = None
    min_samples: int = 1
    prepare: Callable[..., Prior] | None = None
    preparation_settings: tuple[str, ...] = field(default=())
    ranges: Mapping[str, Range] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)
        object.__setattr__(self, "needs", frozenset(Need(n) for n in self.needs))

    def settings(self) -> list[str]:
        """The names of the settings a run may pass (the function's keywords and the preparation's)."""
        params = inspect.signature(self.function).parameters
        own = [k for k, p in params.items() if k not in COMMON_ARGUMENTS and p.kind is p.KEYWORD_ONLY]
        return sorted([*own, *self.preparation_settings])

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Refuse settings the sampler does not take, naming them and the ones it does."""
        allowed = self.settings()
        unknown = sorted(k for k in settings if k not in allowed)
        if unknown:
            raise ValueError(f"sampler {self.name!r}: unknown setting(s) {unknown}; it takes {allowed}")
        for key, value in settings.items():
            allowed_range = self.ranges.get(key)
            if allowed_range is None or (value is None and self.default(key) is None):
                continue
            if not allowed_range.admits(value):
                raise ValueError(f"sampler {self.name!r}: {key} must be {allowed_range.describe()}, got {value!r}")

    def default(self, key: str) -> Any:
        """The default value of a setting (``None`` for preparation settings without one)."""
        for fn in (self.function, self.prepare):
            param = inspect.signature(fn).parameters.get(key) if fn is not None else None
            if param is not None:
                return param.default
        return None

    def check_inputs(self, measurement, prior: Prior) -> None:
        """Refuse a problem the sampler cannot handle, naming what is missing."""
        missing = missing_needs(self.needs, measurement, prior)
        if missing:
            raise ValueError(f"sampler {self.name!r} needs " + " and ".join(m.value for m in missing)
                             + f"; this problem has {describe(measurement, prior)}")
        if Need.ACTIVE not in self.needs and isinstance(measurement, ActiveMeasurement):
            raise ValueError(f"sampler {self.name!r} reconstructs from a fixed measurement; this problem is an "
                             "active acquisition (only samplers that choose the mask, e.g. ads, take it)")
        if Need.LATENT_PRIOR not in self.needs and _has_need(Need.LATENT_PRIOR, measurement, prior):
            latent = [n for n, d in declarations().items() if Need.LATENT_PRIOR in d.needs]
            raise ValueError(f"sampler {self.name!r} diffuses images; this prior diffuses the latents of an "
                             f"autoencoder (samplers for latent priors: {', '.join(latent)})")
        if Need.TOKEN_PRIOR not in self.needs and _has_need(Need.TOKEN_PRIOR, measurement, prior):
            token = [n for n, d in declarations().items() if Need.TOKEN_PRIOR in d.needs]
            raise ValueError(f"sampler {self.name!r} diffuses continuous values; this prior is over the discrete "
                             f"tokens of a VQ tokenizer (samplers for token priors: {', '.join(token)})")
        if Need.VOLUME not in self.needs and len(_x_shape(measurement)) == 4 and len(prior.shape) == 3:
            raise ValueError(f"sampler {self.name!r} reconstructs images; this problem is a volume "
                             f"{_x_shape(measurement)} (samplers for volumes: {volume_samplers()})")

    def run(self, measurement, prior: Prior, *, steps: int | None = None, n_samples: int,
            generator: torch.Generator, callback=None, **settings: Any) -> SamplerOutput:
        """Check the inputs and settings, prepare, and call the sampler (``steps=None``: ``default_steps``)."""
        self.check_settings(settings)
        self.check_inputs(measurement, prior)
        if n_samples < self.min_samples:
            raise ValueError(f"sampler {self.name!r} needs at least {self.min_samples} samples, got {n_samples}")
        preparation = {k: settings.pop(k) for k in self.preparation_settings if k in settings}
        if self.prepare is not None:
            prior = self.prepare(measurement, prior, **preparation)
        return self.function(measurement, prior, steps=steps or self.default_steps, n_samples=n_samples,
                             generator=generator, callback=callback, **settings)


def describe(measurement, prior: Prior) -> str:
    """A short account of a problem for error messages."""
    op = _operator(measurement)
    kind = "an active acquisition" if isinstance(measurement, ActiveMeasurement) else "a fixed measurement"
    return (f"{kind} by {type(op).__name__} of x {_x_shape(measurement)}, {type(measurement.noise).__name__}, "
            f"and a {type(prior).__name__} over {tuple(prior.shape)}")


def declarations() -> dict[str, SamplerDeclaration]:
    """Every sampler declared in a module of :mod:`invsolve.samplers`, by name (sorted); a new dict per call."""
    return dict(_discovered())


@functools.cache
def _discovered() -> tuple[tuple[str, SamplerDeclaration], ...]:
    """The package's modules are read once per process (immutable declarations, no modules or tensors kept)."""
    import invsolve.samplers as package

    found: dict[str, SamplerDeclaration] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "DECLARATION", None)
        if declared is None:
            continue
        if not isinstance(declared, SamplerDeclaration):
            raise TypeError(f"{module.__name__}.DECLARATION must be a SamplerDeclaration")
        if declared.name in found:
            raise ValueError(f"two samplers declare the name {declared.name!r}")
        found[declared.name] = declared
    return tuple(sorted(found.items()))


def declaration(name: str) -> SamplerDeclaration:
    """The sampler declared as ``name`` (``_`` and ``-`` are the same); a clear error listing the names."""
    found = declarations()
    key = str(name).strip().lower().replace("_", "-")
    if key not in found:
        raise ValueError(f"unknown sampler {name!r}; choose from {list(found)}")
    return found[key]


def volume_samplers() -> list[str]:
    return [n for n, d in declarations().items() if Need.VOLUME in d.needs]
