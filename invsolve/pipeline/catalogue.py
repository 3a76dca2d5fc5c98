"""The one catalogue of problem kinds: each kind registered once with its parameters, builders, TV weight rule
and noise default; specs (``mri:acceleration=4``, or a YAML mapping) parsed and checked against it.

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

Every kind also takes ``noise``: the relative noise level of simulated measurements (default 0.01),
``sigma_y = noise * RMS(A_full x)`` where ``A_full`` is the operator that measures everything a scan
could (for MRI every k-space column, so that all masks see the same noise per sample; for the other
kinds the operator itself). Measured k-space (fastMRI files) is used as it is and ``noise`` is ignored.

MRI masks: fastMRI's equispaced and random (with the fully sampled centre) masks, a polynomial variable
density (:func:`~invsolve.operators.variable_density_mask`), the fixed mask of largest k-space variance
over the default prior's training phantoms (:func:`~invsolve.operators.kspace_variance_mask`), and
``active``: only the centre is given, the rest of the budget (``round(W / acceleration)`` columns in all)
is chosen during sampling by a sampler that needs an active acquisition. ``poisson-disc`` is a 3D mask
for volumes: variable-density Poisson-disc points of the ``(k_z, k_y)`` plane, every ``k_x``.

Each kind builds a :class:`ProblemSetup` for images ``(B, 1, n, n)`` and, where it has one, for volumes
``(B, 1, D, n, n)`` (``ct``: :class:`~invsolve.operators.ParallelBeamCT3D`; ``mri``: 3D Cartesian MRI).
Its TV weight rule gives the weight of the classical TV baseline (tuned by ``experiments/tune_tv_demo.py``):
``ct`` ``0.0125 * views`` (the data term grows with the number of views: 0.1 at 8 views, 0.2 at 16, the
tuned pair), ``mri`` 0.01, ``inpainting`` 0.02, ``blur`` and ``sr`` 0.002.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from invsolve.acquisition import ActiveMeasurement, ColumnAcquisition
from invsolve.measurement import Measurement
from invsolve.noise import GaussianNoise

MRI_MASKS = ("equispaced", "random", "variable-density", "variance", "active", "poisson-disc")
#: Training phantoms whose k-space variance defines the ``variance`` mask (the default prior's stream).
VARIANCE_MASK_TRAINING = {"seed": 0, "count": 256}
DEFAULT_NOISE = 0.01
#: Largest relative noise level a spec may ask for (noise 100x the signal: a measurement of noise alone).
MAX_NOISE = 100.0


def magnitude(z: torch.Tensor) -> torch.Tensor:
    """``(B, 2, ...)`` complex (two real channels) -> ``(B, 1, ...)`` magnitude."""
    return z.square().sum(dim=1, keepdim=True).sqrt()


def log_kspace(y: torch.Tensor) -> torch.Tensor:
    """A display of k-space ``(1, 2, H, W)``: ``log(1 + 100 |y| / max |y|)``."""
    mag = magnitude(y)[0, 0]
    return torch.log1p(100 * mag / mag.max().clamp_min(torch.finfo(mag.dtype).tiny))


def _first_slice(y: torch.Tensor) -> torch.Tensor:
    return y[0, 0] if y.dim() == 4 else y[0, 0, 0]


# -- specs --------------------------------------------------------------------------------------------------
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
        """A short human name for tables, e.g. ``MRI 4x (equispaced)``, ``CT 8 views``, ``Inpainting 50%``."""
        return KINDS[self.kind].label(dict(self.params))

    @property
    def is_active(self) -> bool:
        """Whether the mask is chosen during sampling (``mri`` with ``mask=active``)."""
        return self.kind == "mri" and self["mask"] == "active"

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
            if key.strip() in raw:
                raise ValueError(f"operator spec {spec!r}: {key.strip()} is given twice")
            raw[key.strip()] = value.strip()
    elif isinstance(spec, Mapping):
        raw = dict(spec)
        kind = raw.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError(f"operator spec {dict(spec)!r} needs a 'kind' (one of {list(KINDS)})")
    else:
        raise TypeError(f"operator spec must be a string or a mapping, got {type(spec).__name__}")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"unknown operator {kind!r}; choose from {list(KINDS)}")
    entry = KINDS[kind]
    table = {**entry.parameters, "noise": (float, entry.noise)}
    unknown = sorted(set(raw) - set(table))
    if unknown:
        raise ValueError(f"operator {kind!r}: unknown parameter(s) {unknown}; it takes {sorted(table)}")
    params: dict[str, Any] = {}
    for name, (typ, default) in table.items():
        if name in raw:
            params[name] = _convert(kind, name, typ, raw[name])
        elif default is None:
            raise ValueError(f"operator {kind!r} needs {name}=... (e.g. {entry.example})")
        else:
            params[name] = default
    if not (0 <= params["noise"] <= MAX_NOISE):
        raise _bad(kind, params, "noise", f"a number in [0, {MAX_NOISE:g}] (noise std relative to the data's RMS)")
    entry.check(params)
    return OperatorSpec(kind, tuple(params.items()))


def _bad(kind: str, p: Mapping[str, Any], name: str, expected: str) -> ValueError:
    return ValueError(f"operator {kind!r}: {name} must be {expected}, got {p[name]!r}")


# -- what a kind builds -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemSetup:
    """One inverse problem without data: its operator, classical baseline, display and TV weight.

    ``measure(truth, generator)`` simulates the data of a batch of truths: ``y = A x + n`` with
    ``sigma_y = noise_level * RMS`` over the batch (see the module docstring); MRI setups simulate every column (``acquisition``) and reveal the mask's
    ``columns``; an active MRI setup returns the :class:`~invsolve.acquisition.ActiveMeasurement` itself.
    """

    label: str
    kind: str
    operator: Any
    baseline_name: str
    baseline: Callable[[torch.Tensor], torch.Tensor]
    show_measurement: Callable[[torch.Tensor], torch.Tensor]
    tv_weight: float
    noise_level: float = DEFAULT_NOISE
    acquisition: ColumnAcquisition | None = None
    columns: torch.Tensor | None = None
    budget: int | None = None

    @property
    def name(self) -> str:
        return self.label

    @property
    def slug(self) -> str:
        """The label as a file stem, e.g. ``ct-8-views``."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    def measure(self, truth: torch.Tensor, generator: torch.Generator) -> Measurement | ActiveMeasurement:
        if self.acquisition is None:
            with torch.no_grad():
                clean = self.operator.A(truth)
            noise = GaussianNoise(self.noise_level * float(clean.square().mean().sqrt()))
            return Measurement(self.operator, noise, noise.sample(clean, generator))
        with torch.no_grad():
            full = self.acquisition.full.A(truth)
        noise = GaussianNoise(self.noise_level * float(full.square().mean().sqrt()))
        y_full = noise.sample(full, generator)
        if self.budget is not None:
            return ActiveMeasurement(self.acquisition, y_full, noise, self.columns, self.budget)
        return Measurement(self.operator, noise, self.acquisition.restrict(y_full, self.columns))


@dataclass
class SetupCache:
    """Setups (operators and their memoised SVDs) and variance-mask phantoms, kept by the caller that reuses
    them (consecutive slices of a volume share their setup); nothing is cached at module level."""

    capacity: int = 8
    _setups: OrderedDict = field(default_factory=OrderedDict)
    _phantoms: dict = field(default_factory=dict)

    def image(self, spec: OperatorSpec, size: int, mask_seed: int, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> ProblemSetup:
        key = (spec, size, mask_seed, str(device), dtype)
        if key not in self._setups:
            self._setups[key] = image_setup(spec, size, mask_seed, device=device, dtype=dtype, cache=self)
            while len(self._setups) > self.capacity:
                self._setups.popitem(last=False)
        self._setups.move_to_end(key)
        return self._setups[key]

    def training_phantoms(self, size: int) -> torch.Tensor:
        if size not in self._phantoms:
            from invsolve.datasets.training_data import EllipsePhantoms

            data = EllipsePhantoms(size, seed=VARIANCE_MASK_TRAINING["seed"])
            self._phantoms[size] = torch.stack([data[i][0] for i in range(VARIANCE_MASK_TRAINING["count"])])
        return self._phantoms[size]


@dataclass(frozen=True)
class ProblemKind:
    """A kind of problem, registered once in :data:`KINDS`."""

    name: str
    parameters: Mapping[str, tuple[type, Any]]  # name -> (type, default); default None = required
    example: str
    label: Callable[[dict], str]
    check: Callable[[dict], None]
    image: Callable[..., ProblemSetup]  # (spec, size, mask_seed, device, dtype, cache) -> setup
    tv_weight: Callable[[dict], float]
    volume: Callable[..., ProblemSetup] | None = None  # (spec, (D, n, n), mask_seed, device) -> setup
    noise: float = DEFAULT_NOISE


def image_setup(spec: OperatorSpec, size: int, mask_seed: int, *, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32, cache: SetupCache | None = None) -> ProblemSetup:
    """The :class:`ProblemSetup` of ``spec`` on ``(B, 1, size, size)`` images (masks drawn from ``mask_seed``)."""
    return KINDS[spec.kind].image(spec, size, mask_seed, device=device, dtype=dtype, cache=cache or SetupCache())


def volume_setup(spec: OperatorSpec, shape: tuple[int, int, int], mask_seed: int, *,
                 device: torch.device | str = "cpu") -> ProblemSetup:
    """The :class:`ProblemSetup` of ``spec`` on volumes ``(B, 1, D, n, n)``; refused for kinds without one."""
    kind = KINDS[spec.kind]
    if kind.volume is None:
        raise ValueError(f"3D reconstruction supports the operators {volume_kinds()}, got {spec.kind!r}")
    return kind.volume(spec, shape, mask_seed, device=device)


def volume_kinds() -> list[str]:
    return [name for name, kind in KINDS.items() if kind.volume is not None]


def _setup(spec: OperatorSpec, operator, baseline_name: str, baseline, show, **extra) -> ProblemSetup:
    p = dict(spec.params)
    return ProblemSetup(spec.label, spec.kind, operator, baseline_name, baseline, show,
                        KINDS[spec.kind].tv_weight(p), p["noise"], **extra)


def _identity(y: torch.Tensor) -> torch.Tensor:
    return y


# -- mri ----------------------------------------------------------------------------------------------------
def _mri_label(p: dict) -> str:
    coils = f", {p['coils']} coils" if p["coils"] else ""
    return f"MRI {_fmt(p['acceleration'])}x ({p['mask']}{coils})"


def _mri_check(p: dict) -> None:
    if not p["acceleration"] >= 1:
        raise _bad("mri", p, "acceleration", ">= 1")
    if p["center_fraction"] == "auto":
        p["center_fraction"] = default_center_fraction(p["acceleration"])
    else:
        try:
            p["center_fraction"] = float(p["center_fraction"])
        except ValueError:
            raise _bad("mri", p, "center_fraction", "a number in (0, 1)") from None
        if not 0 < p["center_fraction"] < 1:
            raise _bad("mri", p, "center_fraction", "in (0, 1)")
    if p["mask"] not in MRI_MASKS:
        raise _bad("mri", p, "mask", " or ".join(repr(m) for m in MRI_MASKS))
    if p["coils"] < 0:
        raise _bad("mri", p, "coils", ">= 0")


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairing, ``0.32 / acceleration`` (4x: 0.08, 8x: 0.04)."""
    return round(0.32 / acceleration, 6)


def with_calibration_columns(spec: OperatorSpec, columns: torch.Tensor, minimum: int) -> torch.Tensor:
    """``columns`` with at least ``minimum`` contiguous central columns when the spec's centre fraction is the
    default (at 64 columns fastMRI's 8x pair leaves 3, too few to estimate coil maps); any other
    ``center_fraction`` is used as given (and refused downstream when it leaves too few)."""
    if spec["mask"] == "active" or spec["center_fraction"] != default_center_fraction(spec["acceleration"]):
        return columns
    width = columns.numel()
    pad = (width - minimum + 1) // 2  # fastMRI's centre convention (covers column W // 2)
    widened = columns.clone()
    widened[pad:pad + minimum] = True
    return widened


def mri_columns(spec: OperatorSpec, width: int, seed: int, cache: SetupCache | None = None) -> torch.Tensor:
    """The sampled columns ``(W,)`` (bool) of an ``mri`` spec's mask; for ``active``, the centre alone."""
    from invsolve import operators as ops

    p = dict(spec.params)
    shape, acc, cf = (width, width), p["acceleration"], p["center_fraction"]
    if p["mask"] == "poisson-disc":
        from invsolve.samplers.declaration import volume_samplers

        raise ValueError("mask=poisson-disc samples the (k_z, k_y) plane of a volume: use it with a sampler for "
                         f"volumes ({', '.join(volume_samplers())})")
    if p["mask"] in ("equispaced", "random"):
        mask = ops.fastmri_mask(shape, acc, cf, kind=p["mask"], seed=seed)
    elif p["mask"] == "variable-density":
        mask = ops.variable_density_mask(shape, acc, cf, seed=seed)
    elif p["mask"] == "variance":
        mask = ops.kspace_variance_mask((cache or SetupCache()).training_phantoms(width), acc, cf)
    else:
        mask = torch.zeros(shape)
        n_low = round(width * cf)
        pad = (width - n_low + 1) // 2  # fastMRI's centre convention (covers column W // 2)
        mask[:, pad:pad + n_low] = 1
    return mask[0].bool()


def active_budget(spec: OperatorSpec, width: int) -> int:
    """Columns an ``active`` mask acquires during sampling: ``round(W / acceleration)`` minus the centre."""
    return max(1, round(width / spec["acceleration"])) - int(mri_columns(spec, width, 0).sum())


def _mri_image(spec: OperatorSpec, size: int, mask_seed: int, *, device, dtype, cache: SetupCache) -> ProblemSetup:
    from invsolve import operators as ops

    maps = ops.synthetic_coil_maps(spec["coils"], (size, size)) if spec["coils"] else None
    acquisition = ColumnAcquisition((size, size), maps, dtype=dtype, device=device)
    columns = mri_columns(spec, size, mask_seed, cache)
    if not bool(columns.any()):
        raise ValueError(f"operator {spec.text}: the mask samples no k-space column at width {size} (acceleration "
                         f"{_fmt(spec['acceleration'])}, center_fraction {spec['center_fraction']}); lower the "
                         "acceleration or raise center_fraction")
    mri = acquisition.mri(columns)
    show = (lambda y: log_kspace(y[:, :, 0])) if spec["coils"] else log_kspace  # first coil

    def zero_filled(y: torch.Tensor) -> torch.Tensor:
        return magnitude(mri.zero_filled(y))

    return _setup(spec, acquisition.operator(columns), "zero-filled", zero_filled, show, acquisition=acquisition,
                  columns=columns, budget=active_budget(spec, size) if spec.is_active else None)


def _mri_volume(spec: OperatorSpec, shape: tuple[int, int, int], mask_seed: int, *, device) -> ProblemSetup:
    from invsolve import operators as ops

    depth, n, _ = shape
    if spec["mask"] == "active" or spec["coils"]:
        raise ValueError("3D MRI supports fixed single-coil masks (mask=equispaced|random|variable-density|variance|"
                         "poisson-disc)")
    if spec["mask"] == "poisson-disc":
        plane = ops.poisson_disc_mask((depth, n), spec["acceleration"], spec["center_fraction"], mask_seed)
        mask = plane[:, :, None].expand(depth, n, n).contiguous().to(device)
    else:
        mask = mri_columns(spec, n, mask_seed).float().expand(n, n).clone().to(device)
    mri = ops.SingleCoilMRI(mask, (depth, n, n), device=device)

    def zero_filled(y: torch.Tensor) -> torch.Tensor:
        return magnitude(mri.zero_filled(y))

    return _setup(spec, mri @ ops.RealToComplex((1, depth, n, n), device=device), "zero-filled", zero_filled,
                  _first_slice)


# -- ct -----------------------------------------------------------------------------------------------------
def _ct_check(p: dict) -> None:
    if p["views"] < 1:
        raise _bad("ct", p, "views", ">= 1")
    if not 0 < p["arc"] <= 360:
        raise _bad("ct", p, "arc", "in (0, 360] degrees")


def _ct_image(spec: OperatorSpec, size: int, mask_seed: int, *, device, dtype, cache) -> ProblemSetup:
    from invsolve import operators as ops

    op = ops.ParallelBeamCT(ops.sparse_view_angles(spec["views"], spec["arc"]), size, dtype=dtype, device=device)
    return _setup(spec, op, "FBP", op.fbp, _first_slice)


def _ct_volume(spec: OperatorSpec, shape: tuple[int, int, int], mask_seed: int, *, device) -> ProblemSetup:
    from invsolve import operators as ops

    op = ops.ParallelBeamCT3D(ops.sparse_view_angles(spec["views"], spec["arc"]), shape, device=device)
    return _setup(spec, op, "FBP", op.fbp, _first_slice)


# -- inpainting, blur, super-resolution ---------------------------------------------------------------------
def _inpainting_image(spec: OperatorSpec, size: int, mask_seed: int, *, device, dtype, cache) -> ProblemSetup:
    from invsolve import operators as ops

    if round(spec["fraction"] * size * size) < 1:
        raise ValueError(f"operator {spec.text}: a fraction of {spec['fraction']:g} observes no pixel of a "
                         f"{size}x{size} image; raise the fraction")
    op = ops.Inpainting.random((1, size, size), spec["fraction"], torch.Generator().manual_seed(mask_seed),
                               dtype=dtype, device=device)
    return _setup(spec, op, "masked image", _identity, _first_slice)


def _blur_image(spec: OperatorSpec, size: int, mask_seed: int, *, device, dtype, cache) -> ProblemSetup:
    from invsolve import operators as ops

    op = ops.Blur.gaussian((1, size, size), spec["sigma"], dtype=dtype, device=device)
    return _setup(spec, op, "blurred image", _identity, _first_slice)


def _sr_image(spec: OperatorSpec, size: int, mask_seed: int, *, device, dtype, cache) -> ProblemSetup:
    from invsolve import operators as ops

    op = ops.SuperResolution((1, size, size), spec["factor"], "bicubic", dtype=dtype, device=device)

    def bicubic(y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(y, size=(size, size), mode="bicubic", align_corners=False)

    return _setup(spec, op, "bicubic", bicubic, _first_slice)


def _in_range(kind: str, name: str, low: float, high: float = math.inf, *,
              open_low: bool = False) -> Callable[[dict], None]:
    """The check of one parameter: ``low < value`` (``open_low``) or ``low <= value``, and ``value <= high``."""
    if high < math.inf:
        expected = f"in {'(' if open_low else '['}{_fmt(low)}, {_fmt(high)}]"
    else:
        expected = f"{'>' if open_low else '>='} {_fmt(low)}"

    def check(p: dict) -> None:
        if not ((p[name] > low if open_low else p[name] >= low) and p[name] <= high):
            raise _bad(kind, p, name, expected)

    return check


KINDS: dict[str, ProblemKind] = {kind.name: kind for kind in (
    ProblemKind("mri", {"acceleration": (float, None), "center_fraction": (float, "auto"),
                        "mask": (str, "equispaced"), "coils": (int, 0)},
                "mri:acceleration=4", _mri_label, _mri_check, _mri_image, lambda p: 0.01, _mri_volume),
    ProblemKind("ct", {"views": (int, None), "arc": (float, 180.0)}, "ct:views=8",
                lambda p: f"CT {p['views']} views" + ("" if p["arc"] == 180 else f" over {_fmt(p['arc'])} deg"),
                _ct_check, _ct_image, lambda p: 0.0125 * p["views"], _ct_volume),
    ProblemKind("inpainting", {"fraction": (float, None)}, "inpainting:fraction=0.5",
                lambda p: f"Inpainting {_fmt(100 * p['fraction'])}%", _in_range("inpainting", "fraction", 0, 1, open_low=True),
                _inpainting_image, lambda p: 0.02),
    ProblemKind("blur", {"sigma": (float, 1.5)}, "blur:sigma=1.5",
                lambda p: f"Gaussian deblur (sigma {_fmt(p['sigma'])} px)", _in_range("blur", "sigma", 0, open_low=True),
                _blur_image, lambda p: 0.002),
    ProblemKind("sr", {"factor": (int, 4)}, "sr:factor=4", lambda p: f"SR {p['factor']}x",
                _in_range("sr", "factor", 1), _sr_image, lambda p: 0.002),
)}
OPERATOR_KINDS: tuple[str, ...] = tuple(KINDS)
