"""Operator specifications: the text a user writes (``mri:acceleration=4``) or a YAML mapping, parsed and built.

A spec names a kind and its parameters; every parameter has a type, a default (or is required)
and a check, so a typo or a bad value fails at parse time with a message naming it:

=============  ==================================================================================
kind           parameters (default)
=============  ==================================================================================
``mri``        ``acceleration`` (required), ``center_fraction`` (``0.32 / acceleration``: the
               fastMRI pairs 4x / 0.08 and 8x / 0.04), ``mask`` (``equispaced`` | ``random`` |
               ``variable-density`` | ``variance`` | ``active`` | ``poisson-disc``: volumes only),
               ``coils`` (simulated receive coils for image data, ``0`` = single-coil)
``ct``         ``views`` (required), ``arc`` in degrees (180: sparse view; less: limited angle)
``inpainting`` ``fraction`` of observed pixels (required)
``blur``       ``sigma`` of the Gaussian kernel in pixels (1.5)
``sr``         ``factor`` (4), bicubic anti-alias filter
=============  ==================================================================================

MRI masks: fastMRI's equispaced and random (with the fully sampled centre) masks, a polynomial
variable density (:func:`~invsolve.operators.variable_density_mask`), the fixed mask of largest
k-space variance over the default prior's training phantoms (:func:`~invsolve.operators.kspace_variance_mask`),
and ``active``: only the centre is given, the rest of the budget (``round(W / acceleration)``
columns in all) is chosen during sampling by the ``ads`` method (:mod:`invsolve.samplers.ads`).
``poisson-disc`` is a 3D mask for volumes (``mbir3d``): variable-density Poisson-disc points of the
``(k_z, k_y)`` plane (:func:`~invsolve.operators.poisson_disc_mask`), every ``k_x``.

Every kind also takes ``noise``: the relative noise level of simulated measurements,
``sigma_y = noise * RMS(A x)`` (0.01, as :data:`invsolve.tasks.NOISE_LEVEL`). Measured k-space
(fastMRI files) is used as it is and ``noise`` is ignored there.

:func:`image_task` builds the :class:`~invsolve.tasks.ReconstructionTask` of a spec on real
``(B, 1, n, n)`` images (operator, classical baseline, TV weight); masks and random patterns are
drawn from ``seed``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: kind -> {parameter: (type, default)}; ``None`` default = required.
_PARAMETERS: dict[str, dict[str, tuple[type, Any]]] = {
    "mri": {"acceleration": (float, None), "center_fraction": (float, "auto"), "mask": (str, "equispaced"),
            "coils": (int, 0)},
    "ct": {"views": (int, None), "arc": (float, 180.0)},
    "inpainting": {"fraction": (float, None)},
    "blur": {"sigma": (float, 1.5)},
    "sr": {"factor": (int, 4)},
}
_COMMON: dict[str, tuple[type, Any]] = {"noise": (float, 0.01)}
OPERATOR_KINDS: tuple[str, ...] = tuple(_PARAMETERS)
MRI_MASKS = ("equispaced", "random", "variable-density", "variance", "active", "poisson-disc")
#: Training phantoms whose k-space variance defines the ``variance`` mask (the default prior's stream).
VARIANCE_MASK_TRAINING = {"seed": 0, "count": 256}

#: TV weights per kind, from ``experiments/tune_tv_demo.py`` on the default prior's phantoms.
_TV_WEIGHT = {"mri": 0.01, "ct": 0.1, "inpainting": 0.02, "blur": 0.002, "sr": 0.002}


@dataclass(frozen=True)
class OperatorSpec:
    """A parsed operator spec: ``kind`` plus every parameter (defaults filled in), in a fixed order."""

    kind: str
    params: tuple[tuple[str, Any], ...]

    def __getitem__(self, name: str) -> Any:
        return dict(self.params)[name]

    @property
    def text(self) -> str:
        """The canonical spec string, e.g. ``mri:acceleration=4,center_fraction=0.08,mask=equispaced,...``."""
        return self.kind + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params)

    @property
    def label(self) -> str:
        """A short human name for tables, e.g. ``MRI 4x``, ``CT 8 views``, ``Inpainting 50%``."""
        p = dict(self.params)
        if self.kind == "mri":
            coils = f", {p['coils']} coils" if p["coils"] else ""
            return f"MRI {_fmt(p['acceleration'])}x ({p['mask']}{coils})"
        if self.kind == "ct":
            return f"CT {p['views']} views" + ("" if p["arc"] == 180 else f" over {_fmt(p['arc'])} deg")
        if self.kind == "inpainting":
            return f"Inpainting {_fmt(100 * p['fraction'])}%"
        if self.kind == "blur":
            return f"Gaussian deblur (sigma {_fmt(p['sigma'])} px)"
        return f"SR {p['factor']}x"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dict(self.params)}


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _convert(kind: str, name: str, typ: type, value: Any) -> Any:
    if typ is str:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"operator {kind!r}: {name} must be a number, got {value!r}") from None
    if typ is int:
        if not number.is_integer():
            raise ValueError(f"operator {kind!r}: {name} must be an integer, got {value!r}")
        return int(number)
    return number


def parse_operator_spec(spec: str | Mapping[str, Any] | OperatorSpec) -> OperatorSpec:
    """Parse ``"kind:key=value,key=value"`` or a mapping ``{"kind": ..., key: value}``; check every value."""
    if isinstance(spec, OperatorSpec):
        return spec
    if isinstance(spec, str):
        kind, _, rest = spec.strip().partition(":")
        raw: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"operator spec {spec!r}: expected key=value, got {item!r}")
            raw[key.strip()] = value.strip()
    elif isinstance(spec, Mapping):
        raw = dict(spec)
        kind = raw.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError(f"operator spec {dict(spec)!r} needs a 'kind' (one of {list(OPERATOR_KINDS)})")
    else:
        raise TypeError(f"operator spec must be a string or a mapping, got {type(spec).__name__}")
    kind = kind.strip().lower()
    if kind not in _PARAMETERS:
        raise ValueError(f"unknown operator {kind!r}; choose from {list(OPERATOR_KINDS)}")
    table = {**_PARAMETERS[kind], **_COMMON}
    unknown = sorted(set(raw) - set(table))
    if unknown:
        raise ValueError(f"operator {kind!r}: unknown parameter(s) {unknown}; it takes {sorted(table)}")
    params: dict[str, Any] = {}
    for name, (typ, default) in table.items():
        if name in raw:
            params[name] = _convert(kind, name, typ, raw[name])
        elif default is None:
            raise ValueError(f"operator {kind!r} needs {name}=... (e.g. {_example(kind)})")
        else:
            params[name] = default
    _check(kind, params)
    return OperatorSpec(kind, tuple(params.items()))


def _example(kind: str) -> str:
    return {"mri": "mri:acceleration=4", "ct": "ct:views=8", "inpainting": "inpainting:fraction=0.5"}.get(kind, kind)


def _check(kind: str, p: dict[str, Any]) -> None:
    def bad(name: str, expected: str) -> ValueError:
        return ValueError(f"operator {kind!r}: {name} must be {expected}, got {p[name]!r}")

    if not (0 <= p["noise"] < math.inf):
        raise bad("noise", "a finite number >= 0")
    if kind == "mri":
        if not p["acceleration"] >= 1:
            raise bad("acceleration", ">= 1")
        if p["center_fraction"] == "auto":
            p["center_fraction"] = round(0.32 / p["acceleration"], 6)
        elif not 0 < float(p["center_fraction"]) < 1:
            raise bad("center_fraction", "in (0, 1)")
        p["center_fraction"] = float(p["center_fraction"])
        if p["mask"] not in MRI_MASKS:
            raise bad("mask", " or ".join(repr(m) for m in MRI_MASKS))
        if p["coils"] < 0:
            raise bad("coils", ">= 0")
    elif kind == "ct":
        if p["views"] < 1:
            raise bad("views", ">= 1")
        if not 0 < p["arc"] <= 360:
            raise bad("arc", "in (0, 360] degrees")
    elif kind == "inpainting" and not 0 < p["fraction"] <= 1:
        raise bad("fraction", "in (0, 1]")
    elif kind == "blur" and not p["sigma"] > 0:
        raise bad("sigma", "> 0")
    elif kind == "sr" and p["factor"] < 1:
        raise bad("factor", ">= 1")


def image_task(spec: OperatorSpec, size: int, seed: int, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32):
    """The :class:`~invsolve.tasks.ReconstructionTask` of ``spec`` on ``(B, 1, size, size)`` images."""
    from invsolve import operators as ops
    from invsolve.tasks import ReconstructionTask, _log_kspace, _magnitude

    p = dict(spec.params)
    kw: dict[str, Any] = {"dtype": dtype, "device": device}
    show_image: Callable[[torch.Tensor], torch.Tensor] = lambda y: y[0, 0]  # noqa: E731
    tv = _TV_WEIGHT[spec.kind]
    if spec.kind == "mri":
        mask = mri_columns(spec, size, seed).to(dtype).expand(size, size).clone()
        if p["coils"]:
            maps = ops.synthetic_coil_maps(p["coils"], (size, size))
            mri = ops.MultiCoilMRI(mask.to(device), maps, (size, size), **kw)
            show = lambda y: _log_kspace(y[:, :, 0])  # noqa: E731  (first coil)
        else:
            mri = ops.SingleCoilMRI(mask.to(device), (size, size), **kw)
            show = _log_kspace
        op = mri @ ops.RealToComplex((1, size, size), **kw)
        return ReconstructionTask(spec.label, op, "zero-filled", lambda y: _magnitude(mri.zero_filled(y)), show, tv)
    if spec.kind == "ct":
        angles = ops.sparse_view_angles(p["views"], p["arc"])
        op = ops.ParallelBeamCT(angles, size, **kw)
        return ReconstructionTask(spec.label, op, "FBP", op.fbp, show_image, tv)
    if spec.kind == "inpainting":
        op = ops.Inpainting.random((1, size, size), p["fraction"], torch.Generator().manual_seed(seed), **kw)
        return ReconstructionTask(spec.label, op, "masked image", lambda y: y, show_image, tv)
    if spec.kind == "blur":
        op = ops.Blur.gaussian((1, size, size), p["sigma"], **kw)
        return ReconstructionTask(spec.label, op, "blurred image", lambda y: y, show_image, tv)
    op = ops.SuperResolution((1, size, size), p["factor"], "bicubic", **kw)

    def bicubic(y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(y, size=(size, size), mode="bicubic", align_corners=False)

    return ReconstructionTask(spec.label, op, "bicubic", bicubic, show_image, tv)


def mri_columns(spec: OperatorSpec, width: int, seed: int) -> torch.Tensor:
    """The sampled columns ``(W,)`` (bool) of an ``mri`` spec's mask; for ``active``, the centre alone."""
    from invsolve import operators as ops

    p = dict(spec.params)
    shape, acc, cf = (width, width), p["acceleration"], p["center_fraction"]
    if p["mask"] == "poisson-disc":
        raise ValueError("mask=poisson-disc samples the (k_z, k_y) plane of a volume: use it with the mbir3d sampler")
    if p["mask"] in ("equispaced", "random"):
        mask = ops.fastmri_mask(shape, acc, cf, kind=p["mask"], seed=seed)
    elif p["mask"] == "variable-density":
        mask = ops.variable_density_mask(shape, acc, cf, seed=seed)
    elif p["mask"] == "variance":
        mask = ops.kspace_variance_mask(_training_phantoms(width), acc, cf)
    else:
        mask = torch.zeros(shape)
        n_low = round(width * cf)
        pad = (width - n_low + 1) // 2  # fastMRI's centre convention (covers column W // 2)
        mask[:, pad:pad + n_low] = 1
    return mask[0].bool()


def active_budget(spec: OperatorSpec, width: int) -> int:
    """Columns an ``active`` mask acquires during sampling: ``round(W / acceleration)`` minus the centre."""
    return max(1, round(width / spec["acceleration"])) - int(mri_columns(spec, width, 0).sum())


@functools.lru_cache(maxsize=4)
def _training_phantoms(size: int) -> torch.Tensor:
    from invsolve.tasks import phantoms

    return phantoms(VARIANCE_MASK_TRAINING["seed"], VARIANCE_MASK_TRAINING["count"], size)[:, 0]
