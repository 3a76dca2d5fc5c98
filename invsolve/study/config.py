"""Study configuration: a YAML file parsed into checked, immutable specs.

```yaml
name: knee-4x                      # optional, used in titles
dataset:
  kind: fastmri                    # phantoms | brain | shepp-logan | nifti | fastmri | images
  path: /data/multicoil_val        # nifti / fastmri / images: a folder or one file
  slices: all                      # all | middle | [0, 3, 7] | {start: 0, stop: 20, step: 2}
  resize: none                     # none | prior: how data of another resolution meet the prior
  max_items: null                  # at most this many slices in total (files in sorted order)
operators: ["mri:acceleration=4", {kind: mri, acceleration: 8}]
priors: [default]                  # default | brain | ellipsoid_slice | {path: runs/x/prior.pt, name: x}
samplers: [baseline, {name: dps, steps: 100, samples: 4}]
seeds: [0]
device: cpu
figures: true                      # one PNG per case (truth, mean, std, error) plus a summary plot
```

Phantom datasets take ``count``, ``seed`` (the stream; default the held-out evaluation stream)
and ``size`` (default: the prior's); brain datasets (:mod:`invsolve.datasets.brain`) ``count``, ``seed`` and
``split`` (``heldout``, the default; ``tuning``; or ``subjects``, the real-subject slices of
:func:`~invsolve.datasets.brain.subject_slices`, evenly spaced when ``count`` is given, all without it); NIfTI datasets ``volume`` (index or ``all`` for 4D files),
``plane`` (axial, coronal, sagittal) and ``percentiles`` (intensity window mapped to [0, 1]).
Every field is checked here, before any case runs; a mistake names the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from invsolve.pipeline.catalogue import OperatorSpec, parse_operator_spec
from invsolve.pipeline.methods import MethodSpec, parse_method_spec
from invsolve.samplers.declaration import Need, declarations

DATASET_KINDS = ("phantoms", "brain", "shepp-logan", "nifti", "fastmri", "images")
_DATASET_FIELDS = {
    "phantoms": {"count", "seed", "size"},
    "brain": {"count", "seed", "split"},
    "shepp-logan": {"size"},
    "nifti": {"path", "slices", "volume", "plane", "resize", "percentiles", "max_items"},
    "fastmri": {"path", "slices", "resize", "max_items"},
    "images": {"path", "resize", "max_items"},
}
_TOP_LEVEL = {"name", "dataset", "operators", "priors", "samplers", "seeds", "device", "figures"}


@dataclass(frozen=True)
class PriorSpec:
    """A shipped prior by name (``path`` None: ``default``, ``brain``, ...) or a prior file written by
    ``invsolve train-prior``."""

    name: str
    path: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class StudyConfig:
    dataset: DatasetSpec
    operators: tuple[OperatorSpec, ...]
    priors: tuple[PriorSpec, ...]
    samplers: tuple[MethodSpec, ...]
    seeds: tuple[int, ...] = (0,)
    name: str = "study"
    device: str = "cpu"
    figures: bool = True
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def canonical(self) -> dict[str, Any]:
        """Everything that defines the results (not the device), as plain JSON-able data."""
        return {
            "dataset": {"kind": self.dataset.kind, **dict(self.dataset.options)},
            "operators": [o.text for o in self.operators],
            "priors": [{"name": p.name, "path": p.path} for p in self.priors],
            "samplers": [s.as_dict() for s in self.samplers],
            "seeds": list(self.seeds),
        }

    @property
    def fingerprint(self) -> str:
        """Hash of :meth:`canonical`: a rerun resumes only a study with the same fingerprint."""
        text = json.dumps(self.canonical(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _as_list(value: Any, what: str) -> list:
    if value is None:
        raise ValueError(f"study config needs '{what}' (a list)")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"study config: '{what}' must not be empty")
    return items


def _dataset(raw: Any) -> DatasetSpec:
    if not isinstance(raw, Mapping) or "kind" not in raw:
        raise ValueError(f"study config: 'dataset' must be a mapping with a 'kind' (one of {list(DATASET_KINDS)})")
    options = dict(raw)
    kind = str(options.pop("kind")).lower()
    if kind not in DATASET_KINDS:
        raise ValueError(f"study config: unknown dataset kind {kind!r}; choose from {list(DATASET_KINDS)}")
    unknown = sorted(set(options) - _DATASET_FIELDS[kind])
    if unknown:
        raise ValueError(f"study config: dataset kind {kind!r} takes no {unknown}; it takes {sorted(_DATASET_FIELDS[kind])}")
    if "path" in _DATASET_FIELDS[kind]:
        if "path" not in options:
            raise ValueError(f"study config: dataset kind {kind!r} needs a 'path'")
        options["path"] = str(options["path"])
    resize = options.get("resize", "none")
    if resize not in ("none", "prior"):
        raise ValueError(f"study config: dataset.resize must be 'none' or 'prior', got {resize!r}")
    for key in ("count", "max_items", "size"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"study config: dataset.{key} must be a positive integer, got {value!r}")
    _check_slices(options.get("slices", "all"))
    if kind == "brain":
        from invsolve.datasets.brain import SPLITS

        split = options.get("split", "heldout")
        if split not in (*SPLITS[1:], "subjects"):
            raise ValueError(f"study config: dataset.split must be 'heldout', 'tuning' or 'subjects' (training images "
                             f"are not for evaluation), got {options.get('split')!r}")
        if split == "subjects" and "seed" in options:
            raise ValueError("study config: dataset.seed has no meaning for split 'subjects' (fixed real slices)")
        seed = options.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"study config: dataset.seed must be an integer in [0, 2**31), got {seed!r}")
    return DatasetSpec(kind, tuple(sorted(options.items())))


def _check_slices(slices: Any) -> None:
    if slices in ("all", "middle"):
        return
    if isinstance(slices, Mapping) and set(slices) <= {"start", "stop", "step"}:
        return
    if isinstance(slices, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in slices):
        return
    raise ValueError(f"study config: dataset.slices must be 'all', 'middle', a list of indices or "
                     f"{{start, stop, step}}, got {slices!r}")


def _prior(raw: Any) -> PriorSpec:
    from invsolve.priors.default import SHIPPED

    if isinstance(raw, str) and raw in SHIPPED:
        return PriorSpec(raw)  # a shipped prior by name
    if isinstance(raw, str):
        return PriorSpec(Path(raw).stem, raw)
    if isinstance(raw, Mapping) and "path" in raw and set(raw) <= {"path", "name"}:
        return PriorSpec(str(raw.get("name") or Path(str(raw["path"])).stem), str(raw["path"]))
    raise ValueError(f"study config: a prior is 'default', a path or {{path, name}}, got {raw!r}")


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"study config: seeds must be non-negative integers, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"study config: {name} must be true or false (a YAML boolean), got {value!r}")
    return value


def parse_config(raw: Any, *, steps: int | None = None, seed: int | None = None) -> StudyConfig:
    """Check a config mapping; ``steps`` / ``seed`` override every sampler's steps / the seed list."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"--steps must be a positive integer, got {steps!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if not isinstance(raw, Mapping):
        raise ValueError(f"study config must be a mapping (YAML keys), got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise ValueError(f"study config: unknown key(s) {unknown}; allowed: {sorted(_TOP_LEVEL)}")
    operators = tuple(parse_operator_spec(o) for o in _as_list(raw.get("operators"), "operators"))
    samplers = []
    for s in _as_list(raw.get("samplers"), "samplers"):
        spec = parse_method_spec(s)
        if steps is not None and not spec.is_classical:
            spec = MethodSpec(spec.name, steps, spec.samples, spec.hyper)
        samplers.append(spec)
    seeds = (seed,) if seed is not None else tuple(_seed(s) for s in _as_list(raw.get("seeds", [0]), "seeds"))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"study config: seeds must be distinct, got {list(seeds)}")
    labels = [s.label for s in samplers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"study config: the samplers list repeats a method with the same settings: {labels}")
    volume_methods = [s.name for s in samplers if Need.VOLUME in s.needs]
    if volume_methods:
        raise ValueError(f"study config: {', '.join(volume_methods)} reconstructs whole volumes, not the slices a "
                         f"study runs; use `invsolve reconstruct VOLUME.nii.gz --sampler {volume_methods[0]}`")
    choosers = " or ".join(repr(n) for n, d in declarations().items() if Need.ACTIVE in d.needs)
    has_active_sampler = any(Need.ACTIVE in s.needs for s in samplers)
    has_active_operator = any(o.is_active for o in operators)
    if has_active_operator and not has_active_sampler:
        raise ValueError(f"study config: an operator with mask=active needs the {choosers} sampler (it picks the mask)")
    if has_active_sampler and not has_active_operator:
        names = [s.name for s in samplers if Need.ACTIVE in s.needs]
        raise ValueError(f"study config: the {names[0]!r} sampler needs an mri operator with mask=active")
    dataset = _dataset(raw.get("dataset"))
    if dataset.kind == "fastmri" and any(o.kind != "mri" for o in operators):
        raise ValueError("study config: fastMRI data hold k-space, so every operator must be 'mri', got "
                         f"{[o.kind for o in operators]}")
    exact_only = [s.name for s in samplers if Need.EXACT_MODEL in s.needs]
    if dataset.kind == "fastmri" and exact_only:
        raise ValueError(f"study config: {', '.join(exact_only)} needs {Need.EXACT_MODEL.value}")
    return StudyConfig(
        dataset=dataset,
        operators=operators,
        priors=tuple(_prior(p) for p in _as_list(raw.get("priors", ["default"]), "priors")),
        samplers=tuple(samplers),
        seeds=seeds,
        name=str(raw.get("name", "study")),
        device=str(raw.get("device", "cpu")),
        figures=_flag(raw.get("figures", True), "figures"),
        raw=dict(raw),
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and check a YAML study config (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ValueError(f"study config {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_config(raw, **overrides)

