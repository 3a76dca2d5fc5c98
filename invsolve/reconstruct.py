"""``invsolve reconstruct``: one input file -> operator -> sampler -> mean and std files.

Inputs (by suffix):

- NIfTI (``.nii``, ``.nii.gz``): the volume is the ground truth; every slice of the chosen plane is
  measured with the operator (simulated, seeded) and reconstructed with the 2D prior. Outputs in
  NIfTI keep the input's grid, affine and header (:func:`invsolve.datasets.nifti.write_nifti`);
  intensities are mapped to [0, 1] by the volume's percentile window and back.
- fastMRI HDF5 (``.h5``): the k-space is undersampled retrospectively with the operator's mask
  (``mri`` only) and each slice reconstructed; the fully sampled data give the reference.
- images (``.png``, ``.jpg``, ``.tif``, ``.bmp``, ``.npy``): one grayscale slice, measured as NIfTI slices are.

Outputs (by suffix): ``.nii`` / ``.nii.gz`` (NIfTI inputs: ``OUT`` holds the mean, ``OUT_std`` the
posterior std), ``.h5`` (datasets ``reconstruction`` (slices, H, W), the fastMRI submission layout,
and ``reconstruction_std``), ``.png`` (one slice: ``OUT`` the mean, ``OUT_std`` the std, each scaled
to its own range, recorded in the sidecar). Beside every output, ``OUT.json`` records the settings,
seeds, versions and the metrics against the reference. Nothing is written until everything is
computed; each file is written atomically; existing outputs are refused unless ``overwrite``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invsolve._atomic import atomic_group, atomic_h5, atomic_path
from invsolve.metrics import nmse, psnr, ssim
from invsolve.pipeline.catalogue import parse_operator_spec
from invsolve.pipeline.items import IMAGE_SUFFIXES, ItemRef, list_items, restore_geometry
from invsolve.pipeline.methods import parse_method_spec, run_method
from invsolve.pipeline.seeds import noise_seed, sampler_seed
from invsolve.priors.default import SHIPPED
from invsolve.samplers.declaration import Need
from invsolve.study.cases import Case
from invsolve.study.config import DatasetSpec, PriorSpec
from invsolve.study.runner import CaseRunner, versions

NIFTI_SUFFIXES = (".nii", ".nii.gz")
OUTPUT_SUFFIXES = (".nii", ".nii.gz", ".h5", ".png")


@dataclass
class ReconstructionReport:
    outputs: list[Path]
    metrics: dict[str, float]
    records: list[dict] = field(default_factory=list)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _input_kind(path: Path) -> str:
    suffix = _suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix == ".h5":
        return "fastmri"
    if suffix in IMAGE_SUFFIXES:
        return "images"
    raise ValueError(f"input {path} has an unsupported type {suffix!r}; expected NIfTI (.nii, .nii.gz), "
                     f"fastMRI HDF5 (.h5) or an image ({', '.join(IMAGE_SUFFIXES)})")


def output_paths(out: Path) -> tuple[Path, Path | None, Path]:
    """``(mean, std or None when it shares the mean's file, sidecar json)`` for an output path."""
    suffix = _suffix(out)
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {out} must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    stem = out.name[: -len(suffix)]
    std = None if suffix == ".h5" else out.with_name(f"{stem}_std{suffix}")
    return out, std, out.with_name(f"{stem}.json")


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse, before any work, an output folder that cannot be created or written: a file on its path, or a
    location without write permission (probed by creating and removing a temporary file)."""
    import tempfile

    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        made = "" if existing == folder else f", so the folder {folder} cannot be made"
        raise ValueError(f"{what}: {existing} is a file, not a folder{made}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"{what}: cannot write into {existing} ({err.strerror or err})") from None


def reconstruct_file(
    input_path: str | Path,
    out: str | Path,
    *,
    operator: str,
    sampler: str = "dps",
    steps: int | None = None,
    samples: int = 4,
    seed: int = 0,
    device: str = "cpu",
    prior: str | None = None,
    resize: str = "none",
    volume: int | None = None,
    plane: str = "axial",
    slices: Any = "all",
    overwrite: bool = False,
    progress: bool = True,
) -> ReconstructionReport:
    """Reconstruct ``input_path`` and write the mean and std to ``out`` (see the module docstring)."""
    from tqdm.auto import tqdm

    source, out = Path(input_path), Path(out)
    if source.is_dir():
        raise ValueError(f"input {source} is a folder; expected one file (NIfTI .nii / .nii.gz, fastMRI .h5 "
                                "or an image); run a study to reconstruct a folder")
    if not source.is_file():
        raise FileNotFoundError(f"input {source} does not exist")
    kind = _input_kind(source)
    mean_path, std_path, sidecar = output_paths(out)
    if _suffix(out) in NIFTI_SUFFIXES and kind != "nifti":
        raise ValueError(f"NIfTI output needs a NIfTI input (its header is copied); write {kind} results to .h5")
    for path in (mean_path, std_path, sidecar):
        if path is not None and path.exists() and not overwrite:
            raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
        if path is not None and path.is_dir():
            raise ValueError(f"output {path} is a folder; name a file (--overwrite replaces files, not folders)")
    check_writable_folder(out.parent, "--out")
    options: dict[str, Any] = {"path": str(source), "resize": resize}
    if kind in ("nifti", "fastmri"):
        options["slices"] = slices
    if kind == "nifti":
        from invsolve.datasets.nifti import n_volumes

        count = n_volumes(source)
        if count == 1 and volume not in (None, 0, "all"):
            raise ValueError(f"{source} is 3D (one volume); --volume {volume} does not exist (omit --volume)")
        if count > 1 and volume is None:
            raise ValueError(f"{source} is 4D with {count} volumes; pass --volume INDEX (0..{count - 1}) or --volume all")
        options.update({"plane": plane, **({"volume": volume} if volume is not None else {})})
    dataset = DatasetSpec(kind, tuple(sorted(options.items())))
    op_spec = parse_operator_spec(operator)
    if kind == "fastmri" and op_spec.kind != "mri":
        raise ValueError(f"fastMRI data hold k-space: only the 'mri' operator applies, got {op_spec.kind!r}")
    method = parse_method_spec(sampler, steps=steps, samples=samples)
    prior_spec = PriorSpec("default") if prior is None else (
        PriorSpec(prior) if prior in SHIPPED else PriorSpec(Path(prior).stem, str(prior)))
    items = list_items(dataset)
    volumetric = Need.VOLUME in method.needs
    if volumetric:
        if kind != "nifti" or len({i.volume for i in items}) != 1:
            raise ValueError(f"{method.name} reconstructs one volume: give a NIfTI input (and one --volume of a 4D "
                             "file)")
        if _suffix(out) == ".png":
            raise ValueError("PNG output holds one slice; write the volume to .nii.gz or .h5")
    if _suffix(out) == ".png" and len(items) != 1:
        raise ValueError(f"PNG output holds one slice but the input has {len(items)}; pass --slices middle "
                         "(or one index) or write .h5 / .nii.gz")
    if _suffix(out) in NIFTI_SUFFIXES and slices not in ("all", None):
        from invsolve.datasets.nifti import n_volumes, read_nifti, slice_axis

        header = read_nifti(source, volume=None if n_volumes(source) == 1 else 0)
        n = header.shape[slice_axis(header, plane)]
        if len(items) != n * len({i.volume for i in items}):
            raise ValueError(f"NIfTI output holds whole volumes ({n} slices each) but --slices {slices!r} selects "
                             f"{len(items)}; drop --slices or write .h5")
    runner = CaseRunner(dataset, torch.device(device))
    cases = [Case(item, op_spec, prior_spec, method, seed) for item in items]
    if volumetric:
        records, stack = _reconstruct_volume(runner, cases, dataset)
    else:
        records, arrays = [], []
        for case in tqdm(cases, desc="reconstruct", disable=not progress):
            record, a = runner.run(case)
            records.append(record)
            arrays.append(a)
        stack = {name: np.stack([a[name] for a in arrays]) for name in ("mean", "std", "truth")}
    metrics = {"psnr": psnr(stack["truth"], stack["mean"]), "ssim": ssim(stack["truth"], stack["mean"]),
               "nmse": nmse(stack["truth"], stack["mean"])}
    scoring = {"grid": f"the prior's {stack['truth'].shape[-2]}x{stack['truth'].shape[-1]} grid",
               "data_range": "the reference's maximum (fastMRI)"}
    if kind == "nifti":
        metrics, scoring = _input_grid_metrics(dataset, items, records, stack)
    targets = [p for p in (mean_path, std_path) if p is not None]
    with atomic_group([*targets, sidecar]) as staged:  # all files of the result appear together or not at all
        written = _write_outputs(kind, items, records, stack, dataset, staged[mean_path],
                                 staged[std_path] if std_path is not None else None)
        final = {path: target for target, path in staged.items()}
        outputs = [final[w] for w in written]
        side = {"input": str(source), "outputs": [str(p) for p in outputs], "operator": op_spec.text,
                "sampler": method.as_dict(), "prior": prior_spec.path or prior_spec.name, "seed": seed,
                "device": device, "metrics_vs_reference": metrics, "metrics_scored_on": scoring,
                "reference": "fully sampled k-space" if kind == "fastmri" else "input",
                "slices": [{k: r[k] for k in ("item", "psnr", "ssim", "nmse", "mean_std", "nfe", "seconds",
                                              "noise_seed", "sampler_seed", "scale", "acquisition_order",
                                              "settings_source", "acceleration", "center_columns", "sigma_y",
                                              "sigma_from_file") if k in r}
                           for r in records],
                "versions": versions()}
        if _suffix(out) == ".png":
            side["png_ranges"] = {"mean": [0.0, float(stack["truth"].max())],
                                  "std": [0.0, float(np.nanmax(stack["std"]))]}
        staged[sidecar].write_text(json.dumps(side, indent=1))
    return ReconstructionReport(outputs + [sidecar], metrics, records)


def _input_grid_metrics(dataset: DatasetSpec, items: list[ItemRef], records: list[dict],
                        stack: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, str]]:
    """Scores of NIfTI slices on the input's own grid: every reconstructed slice mapped back (un-resampled,
    un-padded, un-windowed) against the input's voxels clipped to the intensity window, data range = the window's
    width (what the README's "against the input in its percentile window" means)."""
    from invsolve.datasets.nifti import read_nifti, slice_axis, to_slices

    truths, means, windows = [], [], set()
    volumes: dict = {}
    for item, record, mean in zip(items, records, stack["mean"]):
        key = (item.path, item.volume)
        if key not in volumes:
            vol = read_nifti(item.path, volume=item.volume)
            volumes[key] = to_slices(vol.data, slice_axis(vol, dataset.get("plane", "axial")))
        lo, hi = record["window"]
        windows.add((lo, hi))
        truths.append(np.clip(volumes[key][item.index, 0].numpy().astype(np.float64), lo, hi) - lo)
        plane = np.asarray(mean, dtype=np.float64)
        restored = restore_geometry(torch.from_numpy(plane.reshape(plane.shape[-2:])),
                                    tuple(record["original_shape"])).numpy()
        means.append(restored * (hi - lo))
    truth, mean = np.stack(truths), np.stack(means)
    width = max(hi - lo for lo, hi in windows)
    metrics = {"psnr": psnr(truth, mean, data_range=width), "ssim": ssim(truth, mean, data_range=width),
               "nmse": nmse(truth, mean)}
    low, high = dataset.get("percentiles", (0.5, 99.5))
    return metrics, {"grid": f"the input's own voxels ({truth.shape[1]}x{truth.shape[2]} per slice, "
                             f"{len(truth)} slices)",
                     "data_range": f"the width of the input's [{low:g}, {high:g}] percentile window "
                                   f"({width:.6g}); the reference is the input clipped to that window",
                     "per_slice": "the slices' own scores are on the prior's grid (data range: their maximum)"}


def _reconstruct_volume(runner: CaseRunner, cases: list[Case], dataset: DatasetSpec
                        ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The whole volume at once (its slices on the prior grid, stacked) with a sampler that needs a volume.

    Seeds as for slices (:mod:`invsolve.pipeline.seeds`), with the volume (the items' group) as the item.
    """
    from invsolve.pipeline.items import load_image
    from invsolve.pipeline.problems import volume_problem

    first = cases[0]
    prior = runner.prior(first.prior)
    size = prior.shape[-1]
    volumes: dict = {}  # the NIfTI volume is read once for all its slices
    images = [load_image(c.item, size, dataset.get("resize", "none"), plane=dataset.get("plane", "axial"),
                         volumes=volumes) for c in cases]
    truth = torch.stack([im.truth[0, 0] for im in images])[None, None]  # (1, 1, D, n, n)
    item, volume = first.item.group, first.item.volume
    problem = volume_problem(truth, first.operator, mask_seed=first.mask_seed, device=runner.device,
                             noise_seed=noise_seed(item, volume, first.operator.text, first.seed))
    seed = sampler_seed(item, volume, first.run_key)
    result = run_method(first.method, problem, prior, generator=torch.Generator(device=runner.device).manual_seed(seed),
                        prior_name=first.prior.name)
    stack = {"mean": result.mean[0, 0].cpu().numpy(), "std": result.std[0, 0].cpu().numpy(),
             "truth": problem.truth[0, 0].cpu().numpy()}
    records = [{"item": c.item.name, "volume": c.item.volume, "window": list(im.window),
                "original_shape": list(im.original_shape), "nfe": result.nfe, "seconds": result.seconds, "scale": 1.0,
                "sampler_seed": seed, "settings_source": result.settings_source}
               for c, im in zip(cases, images)]
    return records, stack


def _write_outputs(kind: str, items: list[ItemRef], records: list[dict], stack: dict[str, np.ndarray],
                   dataset: DatasetSpec, mean_path: Path, std_path: Path | None) -> list[Path]:
    suffix = _suffix(mean_path)
    if suffix in NIFTI_SUFFIXES:
        return _write_nifti(items, records, stack, dataset, mean_path, std_path)
    if suffix == ".h5":
        with atomic_h5(mean_path) as f:
            f.create_dataset("reconstruction", data=stack["mean"].astype(np.float32))
            f.create_dataset("reconstruction_std", data=stack["std"].astype(np.float32))
            f.attrs["slices"] = [r["item"] for r in records]
        return [mean_path]
    from skimage.io import imsave

    if kind == "images":  # back to the input's grid (undoes --resize; a no-op otherwise)
        shape = tuple(records[0]["original_shape"])
        stack = {k: restore_geometry(torch.from_numpy(v[0]), shape).numpy()[None] for k, v in stack.items()}
    paths = []
    for path, image, top in ((mean_path, stack["mean"][0], float(stack["truth"].max()) or 1.0),
                             (std_path, np.nan_to_num(stack["std"][0]), float(np.nanmax(stack["std"])) or 1.0)):
        pixels = np.clip(image / top, 0.0, 1.0)  # display scaling only; the range is in the sidecar
        with atomic_path(path) as tmp:
            imsave(str(tmp), (pixels * 255).round().astype(np.uint8), check_contrast=False)
        paths.append(path)
    return paths


def _write_nifti(items, records, stack, dataset, mean_path: Path, std_path: Path) -> list[Path]:
    from invsolve.datasets.nifti import read_nifti, slice_axis, write_nifti
    from invsolve.pipeline.items import slices_to_volume

    groups = list(dict.fromkeys(r["volume"] for r in records))
    source = read_nifti(dataset.get("path"), volume=groups[0] if len(groups) == 1 else 0)
    axis = slice_axis(source, dataset.get("plane", "axial"))
    n = source.shape[axis]
    volumes: dict[str, list[np.ndarray]] = {"mean": [], "std": []}
    for v in groups:
        rows = [i for i, r in enumerate(records) if r["volume"] == v]
        if len(rows) != n:
            raise ValueError(f"NIfTI output needs every slice of the volume ({n}), got {len(rows)}; "
                             "drop --slices or write .h5")
        for name in volumes:
            volumes[name].append(slices_to_volume(stack[name][rows], records[rows[0]], axis, source.shape[:3],
                                                  is_std=name == "std"))
    paths = []
    for name, path in (("mean", mean_path), ("std", std_path)):
        data = volumes[name][0] if len(groups) == 1 else np.stack(volumes[name], axis=-1)
        paths.append(write_nifti(path, data.astype(np.float32), like=source, dtype="float32", overwrite=True))
    return paths
