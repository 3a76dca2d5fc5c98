"""Reconstruction methods by name, for the command line and study configs, with checked settings.

A method is a posterior sampler of :mod:`invsolve.samplers` or a classical reconstruction:

- ``baseline``: the operator's classical inverse (zero-filled MRI, FBP, the masked / blurred image,
  bicubic upsampling); ``tv``: total-variation regularised least squares (300 iterations);
- ``dps``, ``pigdm``, ``red-diff``, ``ddrm``: single-sample samplers run ``samples`` times in one batch;
- ``afes``, ``fkc``, ``tds``: weighted particle ensembles with ``samples`` particles;
- ``ads``: active subsampling with ``samples`` DPS particles (operators with ``mask=active`` only);
- ``mbir3d``: volumes ``(1, 1, D, n, n)`` with the 2D prior over slices and TV along z (``chunk`` slices
  per network call, default 12).

Default hyperparameters are those measured for the default prior per operator kind
(:data:`invsolve.demo.DEMO_DPS_ZETA`, :data:`invsolve.demo.RED_DIFF_SETTINGS`); anything in a
spec's ``hyper`` mapping overrides them and is passed to the sampler unchanged (an unknown
keyword is reported by the sampler's own signature check before anything runs).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from invsolve.priors.base import Prior

CLASSICAL = ("baseline", "tv")
SAMPLER_NAMES = ("dps", "pigdm", "red-diff", "ddrm", "afes", "fkc", "tds", "ads", "mbir3d")
METHOD_NAMES = CLASSICAL + SAMPLER_NAMES
#: Steps when a spec gives none (the demo's settings: enough for the default prior on CPU).
DEFAULT_STEPS = {"dps": 100, "pigdm": 50, "red-diff": 100, "ddrm": 20, "afes": 100, "fkc": 100, "tds": 100,
                 "ads": 100, "mbir3d": 100}


@dataclass(frozen=True)
class MethodSpec:
    """A reconstruction method by name with its steps, number of samples and extra hyperparameters."""

    name: str
    steps: int | None = None
    samples: int = 4
    hyper: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.hyper)
        if self.name in CLASSICAL:
            return self.name + (f" ({extra[2:]})" if extra else "")
        return f"{self.name} ({self.steps or DEFAULT_STEPS[self.name]} steps, {self.samples} samples{extra})"

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
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown sampler {name!r}; choose from {list(METHOD_NAMES)}")
    n_steps = raw.pop("steps", steps)
    n_samples = raw.pop("samples", samples if samples is not None else (1 if name in CLASSICAL else 4))
    if n_steps is not None and (isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1):
        raise ValueError(f"sampler {name!r}: steps must be a positive integer, got {n_steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"sampler {name!r}: samples must be a positive integer, got {n_samples!r}")
    if name not in CLASSICAL:
        _check_hyper(name, raw)
    elif set(raw) - {"lam", "iterations"}:
        raise ValueError(f"method {name!r} takes no parameters {sorted(set(raw) - {'lam', 'iterations'})}")
    hyper = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in raw.items()))
    return MethodSpec(name, n_steps, n_samples, hyper)


def _sampler_function(name: str) -> Callable[..., Any]:
    from invsolve import samplers

    return getattr(samplers, name.replace("-", "_"))


def _check_hyper(name: str, hyper: Mapping[str, Any]) -> None:
    params = inspect.signature(_sampler_function(name)).parameters
    reserved = {"measurement", "prior", "steps", "sigmas", "n_samples", "generator", "callback", "budget"}
    unknown = sorted(k for k in hyper if (k not in params or k in reserved) and not (name == "mbir3d" and k == "chunk"))
    if unknown:
        allowed = sorted(k for k in params if k not in reserved)
        raise ValueError(f"sampler {name!r}: unknown setting(s) {unknown}; it takes {allowed}")


def default_hyper(name: str, operator_kind: str, steps: int) -> dict[str, Any]:
    """The settings measured for the default prior (``invsolve.demo``) for an operator kind."""
    from invsolve.demo import RED_DIFF_SETTINGS

    if name in ("dps", "ads"):
        zeta = {"ct": 0.05 if steps <= 200 else 0.02, "sr": 3.0}.get(operator_kind, 1.0)
        return {"zeta": zeta}
    if name == "pigdm":
        return {"data_variance": 0.16, "cg_max_iter": 30}
    if name == "red-diff":
        task = {"ct": "CT 8 views", "mri": "MRI 4x", "inpainting": "Inpainting 50%", "blur": "Gaussian deblur",
                "sr": "SR 4x"}[operator_kind]
        return dict(RED_DIFF_SETTINGS[task])
    if name == "ddrm":
        return {"eta": 1.0}
    return {}


@dataclass
class MethodResult:
    """Mean and standard deviation of the reconstruction, ``(B, *x_shape)``, with cost figures."""

    mean: torch.Tensor
    std: torch.Tensor
    nfe: int
    seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


def run_method(spec: MethodSpec, problem, prior: Prior, *, generator: torch.Generator) -> MethodResult:
    """Reconstruct a :class:`~invsolve.pipeline.problems.Problem` with ``spec``.

    Classical methods give ``std = 0`` and ``nfe = 0``. ``ads`` needs a problem with an active
    acquisition (an ``mri`` spec with ``mask=active``) and acquires its budget during sampling; every
    other method reconstructs from the problem's fixed measurement.
    """
    from invsolve.baselines import tv_reconstruct

    measurement = problem.measurement
    if (spec.name == "ads") != (problem.active is not None):
        raise ValueError("the 'ads' sampler and an operator with mask=active go together: ads chooses the "
                         f"mask while it samples (got sampler {spec.name!r} with "
                         f"{'an active' if problem.active is not None else 'a fixed'} mask)")
    start = time.perf_counter()
    if spec.name in CLASSICAL:
        hyper = dict(spec.hyper)
        with torch.no_grad():
            if spec.name == "baseline":
                image = problem.baseline(measurement.y)
            else:
                image = tv_reconstruct(measurement.operator, measurement.y, hyper.get("lam", problem.tv_weight),
                                       iterations=hyper.get("iterations", 300), nonnegative=True,
                                       spatial_dims=3 if problem.truth.dim() == 5 else 2)
        return MethodResult(image, torch.zeros_like(image), 0, time.perf_counter() - start)
    steps = spec.steps or DEFAULT_STEPS[spec.name]
    hyper = {**default_hyper(spec.name, problem.operator_kind, steps), **dict(spec.hyper)}
    volume = problem.truth.dim() == 5
    if (spec.name == "mbir3d") != volume and spec.name not in CLASSICAL:
        raise ValueError("mbir3d reconstructs volumes and the other samplers images: "
                         f"got {spec.name!r} for {'a volume' if volume else 'an image'}")
    if spec.name == "ads":
        hyper["budget"] = problem.budget
        measurement = problem.active
    if spec.name == "mbir3d":
        from invsolve.priors.slice_stack import SliceStackPrior

        prior = SliceStackPrior(prior, problem.truth.shape[2], chunk=hyper.pop("chunk", 12))
    out = _sampler_function(spec.name)(measurement, prior, steps=steps, n_samples=spec.samples,
                                       generator=generator, **hyper)
    seconds = time.perf_counter() - start
    mean, std = out.mean.detach(), out.std.detach()
    if spec.samples == 1:
        std = torch.full_like(mean, math.nan)  # one sample says nothing about the spread
    diagnostics = {k: v for k, v in out.diagnostics.items() if isinstance(v, (int, float, str))}
    if spec.name == "ads":
        diagnostics["acquisition_order"] = [list(step_column) for step_column in out.diagnostics["acquisition_order"]]
    return MethodResult(mean, std, int(out.nfe), seconds, diagnostics)
