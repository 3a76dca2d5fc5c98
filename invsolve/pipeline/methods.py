"""Reconstruction methods by name, and the one reconstruction entry point :func:`run_method`.

A method is a classical reconstruction or a declared sampler (:mod:`invsolve.samplers.declaration`):

- ``baseline``: the operator's classical inverse (zero-filled MRI, FBP, the masked / blurred image,
  bicubic upsampling); ``tv``: total-variation regularised least squares (300 iterations, the kind's
  TV weight unless ``lam`` is given);
- every declared sampler by its declared name, run with ``samples`` samples (particles) in one batch.

Settings: the tuned table (:mod:`invsolve.pipeline.tuned`, by sampler x problem kind x prior) fills in what
a spec leaves out, and the run records where they came from; anything in a spec's ``hyper`` overrides them
and is checked against the sampler's declaration before anything runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from invsolve.acquisition import ActiveMeasurement
from invsolve.pipeline.tuned import DEFAULT_PRIOR, tuned_settings
from invsolve.priors.base import Prior
from invsolve.samplers.declaration import Need, SamplerDeclaration, declaration, declarations

CLASSICAL = ("baseline", "tv")
_CLASSICAL_SETTINGS = ("lam", "iterations")


def method_names() -> list[str]:
    return [*CLASSICAL, *declarations()]


def demo_samplers() -> list[SamplerDeclaration]:
    """The samplers the demo runs (declared with a ``demo_position``), in that order."""
    chosen = [d for d in declarations().values() if d.demo_position is not None]
    return sorted(chosen, key=lambda d: d.demo_position)


@dataclass(frozen=True)
class MethodSpec:
    """A reconstruction method by name with its steps, number of samples and extra settings."""

    name: str
    steps: int | None = None
    samples: int = 4
    hyper: tuple[tuple[str, Any], ...] = ()

    @property
    def is_classical(self) -> bool:
        return self.name in CLASSICAL

    @property
    def needs(self) -> frozenset[Need]:
        return frozenset() if self.is_classical else declaration(self.name).needs

    @property
    def label(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.hyper)
        if self.is_classical:
            return self.name + (f" ({extra[2:]})" if extra else "")
        steps = self.steps or declaration(self.name).default_steps
        return f"{self.name} ({steps} steps, {self.samples} samples{extra})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "samples": self.samples, **dict(self.hyper)}


def parse_method_spec(spec: str | Mapping[str, Any] | MethodSpec, *, steps: int | None = None,
                      samples: int | None = None) -> MethodSpec:
    """``"dps"`` or ``{"name": "dps", "steps": 200, "samples": 8, "zeta": 0.5}``; ``steps`` / ``samples``
    are defaults for specs that do not set them."""
    if isinstance(spec, MethodSpec):
        return spec
    if isinstance(spec, str):
        raw: dict[str, Any] = {"name": spec}
    elif isinstance(spec, Mapping):
        raw = dict(spec)
    else:
        raise TypeError(f"sampler spec must be a name or a mapping, got {type(spec).__name__}")
    name = str(raw.pop("name", "")).strip().lower().replace("_", "-")
    if name not in method_names():
        raise ValueError(f"unknown sampler {name!r}; choose from {method_names()}")
    n_steps = raw.pop("steps", steps)
    n_samples = raw.pop("samples", samples if samples is not None else (1 if name in CLASSICAL else 4))
    if n_steps is not None and (isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1):
        raise ValueError(f"sampler {name!r}: steps must be a positive integer, got {n_steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"sampler {name!r}: samples must be a positive integer, got {n_samples!r}")
    if name in CLASSICAL:
        if set(raw) - set(_CLASSICAL_SETTINGS):
            raise ValueError(f"method {name!r} takes no parameters {sorted(set(raw) - set(_CLASSICAL_SETTINGS))}")
    else:
        declared = declaration(name)
        declared.check_settings(raw)
        if n_samples < declared.min_samples:
            raise ValueError(f"sampler {name!r} needs at least {declared.min_samples} samples, got {n_samples}")
    hyper = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in raw.items()))
    return MethodSpec(name, n_steps, n_samples, hyper)


def goes_with(active: bool, volume: bool, method: MethodSpec) -> bool:
    """Whether ``method`` can run on a problem with an active acquisition / a volume (its declared needs)."""
    return (Need.ACTIVE in method.needs) == active and (Need.VOLUME in method.needs) == volume


@dataclass
class MethodResult:
    """Mean and standard deviation of the reconstruction, ``(B, *x_shape)``, with cost figures.

    ``sample`` is one posterior sample (``None`` for classical methods); ``settings`` the sampler settings
    the run used and ``settings_source`` where they came from (:func:`invsolve.pipeline.tuned.tuned_settings`).
    """

    mean: torch.Tensor
    std: torch.Tensor
    nfe: int
    seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    sample: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    settings_source: str = ""


def tv_weight(problem, prior_name: str) -> tuple[float, str]:
    """The TV weight for ``problem``: tuned for this kind on the prior's data (``("tv", kind, prior)`` in the tuned
    table), else the catalogue's rule for the kind (tuned on the ellipse phantoms)."""
    tuned = tuned_settings("tv", problem.operator_kind, prior_name, 0)
    if tuned.exact and "lam" in tuned.settings:
        return float(tuned.settings["lam"]), tuned.source
    return problem.tv_weight, "the catalogue's TV weight rule for the kind"


def _classical(spec: MethodSpec, problem, start: float, prior_name: str) -> MethodResult:
    from invsolve.baselines import tv_reconstruct

    measurement = problem.measurement
    if isinstance(measurement, ActiveMeasurement):
        raise ValueError(f"method {spec.name!r} reconstructs from a fixed measurement; this problem is an active "
                         "acquisition (mask=active): use a sampler that chooses the mask")
    hyper = dict(spec.hyper)
    settings, source = {}, ""
    with torch.no_grad():
        if spec.name == "baseline":
            image = problem.baseline(measurement.y)
        else:
            lam, source = (hyper["lam"], "given") if "lam" in hyper else tv_weight(problem, prior_name)
            settings = {"lam": lam}
            image = tv_reconstruct(measurement.operator, measurement.y, lam,
                                   iterations=hyper.get("iterations", 300), nonnegative=True,
                                   spatial_dims=3 if problem.truth.dim() == 5 else 2)
    return MethodResult(image, torch.zeros_like(image), 0, time.perf_counter() - start, settings=settings,
                        settings_source=source)


def run_method(spec: MethodSpec, problem, prior: Prior, *, generator: torch.Generator,
               prior_name: str = DEFAULT_PRIOR, callback=None) -> MethodResult:
    """Reconstruct a :class:`~invsolve.pipeline.problems.Problem` with ``spec`` (the one entry point).

    Classical methods give ``std = 0`` and ``nfe = 0``. Samplers are run through their declaration
    (:meth:`~invsolve.samplers.declaration.SamplerDeclaration.run`), which refuses problems lacking what they
    need; settings come from the tuned table for ``(sampler, problem kind, prior_name)`` unless the spec sets
    them. With one sample the std is NaN (one sample says nothing about the spread).
    """
    start = time.perf_counter()
    if spec.is_classical:
        return _classical(spec, problem, start, prior_name)
    declared = declaration(spec.name)
    steps = spec.steps or declared.default_steps
    tuned = tuned_settings(declared.name, problem.operator_kind, prior_name, steps)
    settings = {**tuned.settings, **dict(spec.hyper)}
    out = declared.run(problem.measurement, prior, steps=steps, n_samples=spec.samples, generator=generator,
                       callback=callback, **settings)
    seconds = time.perf_counter() - start
    mean, std = out.mean.detach(), out.std.detach()
    if spec.samples == 1:
        std = torch.full_like(mean, math.nan)
    diagnostics = {k: v for k, v in out.diagnostics.items() if isinstance(v, (int, float, str))}
    if "acquisition_order" in out.diagnostics:
        diagnostics["acquisition_order"] = [list(step_column) for step_column in out.diagnostics["acquisition_order"]]
    return MethodResult(mean, std, int(out.nfe), seconds, diagnostics, out.samples[0].detach(), settings,
                        tuned.source)
