"""The merged outputs of a study: tables, per-volume metrics, fastMRI submissions, NIfTI volumes, figures.

Everything here is rebuilt from the case records on disk (``cases/<id>.json`` and ``.npz``), so it
is the same whichever process ran which case and however often the study was resumed.

Metrics: per case (one slice), PSNR / SSIM / NMSE as fastMRI defines them with the slice's own
maximum as data range; per volume, exactly ``fastmri.evaluate`` (its own functions on the whole
volume: PSNR and NMSE over the volume, SSIM averaged over slices, data range = the volume's maximum).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from invsolve._atomic import atomic_h5, atomic_path, write_text_atomic

COLUMNS = ("case_id", "dataset", "item", "group", "slice", "volume", "operator", "prior", "method", "seed",
           "psnr", "ssim", "nmse", "mean_std", "nfe", "seconds", "rank", "mask_seed", "noise_seed",
           "sampler_seed", "scale", "sigma_y", "acceleration", "operator_spec")


def run_slug(record: dict) -> str:
    """A folder name for one reconstruction setting (operator, prior, method, seed)."""
    key = f"{record['operator_spec']}|{record['prior']}|{record['method']}|{record['seed']}"
    text = f"{record['operator']}-{record['prior']}-{record['sampler']}-seed{record['seed']}"
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") + "-" + hashlib.sha256(key.encode()).hexdigest()[:6]


def load_records(out: Path, cases) -> list[dict]:
    missing = [c.case_id for c in cases if not (out / "cases" / f"{c.case_id}.json").is_file()]
    if missing:
        raise RuntimeError(f"{len(missing)} case(s) have no result (e.g. {missing[0]}); rerun the study to finish them")
    return [json.loads((out / "cases" / f"{c.case_id}.json").read_text()) for c in cases]


def _csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def mean_ci(values: list[float]) -> str:
    """Mean +- half-width of the normal 95% interval of the mean (+- 0 for one value)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    return f"{v.mean():.4g} ± {half:.2g}"


def summary_markdown(rows: list[dict], volume_rows: list[dict], title: str) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["operator"], r["prior"], r["method"])].append(r)
    lines = [f"# {title}", "", "Per slice: mean ± 95% CI over slices (fastMRI definitions, data range = the "
             "slice's maximum). 'std' is the mean posterior standard deviation per pixel.", "",
             "| operator | prior | method | n | PSNR (dB) | SSIM | NMSE | std | NFE | s / case |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (op, prior, method), rs in groups.items():
        lines.append(f"| {op} | {prior} | {method} | {len(rs)} | {mean_ci([r['psnr'] for r in rs])} | "
                     f"{mean_ci([r['ssim'] for r in rs])} | {mean_ci([r['nmse'] for r in rs])} | "
                     f"{mean_ci([r['mean_std'] for r in rs]) if rs[0]['nfe'] else '-'} | {rs[0]['nfe']} | "
                     f"{np.mean([r['seconds'] for r in rs]):.2f} |")
    if volume_rows:
        vgroups: dict[tuple, list[dict]] = defaultdict(list)
        for r in volume_rows:
            vgroups[(r["operator"], r["prior"], r["method"])].append(r)
        lines += ["", "Per volume, exactly as `python -m fastmri.evaluate` computes and prints them "
                  "(mean ± 2 standard deviations over volumes):", "",
                  "| operator | prior | method | volumes | NMSE | PSNR | SSIM |", "|---|---|---|---:|---:|---:|---:|"]
        for (op, prior, method), rs in vgroups.items():
            cells = []
            for key in ("NMSE", "PSNR", "SSIM"):
                v = np.asarray([r[key] for r in rs], dtype=float)
                cells.append(f"{v.mean():.4g} ± {2 * v.std(ddof=1) if v.size > 1 else 0.0:.4g}")
            lines.append(f"| {op} | {prior} | {method} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _volumes(out: Path, records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (run slug, volume group), each list sorted by slice."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(run_slug(r), r["group"])].append(r)
    return {k: sorted(v, key=lambda r: r["slice"]) for k, v in groups.items()}


def _stacks(out: Path, records: list[dict]) -> dict[str, np.ndarray]:
    """The ``mean``, ``std`` and ``truth`` arrays of the records, stacked; each case file is read once."""
    arrays = []
    for r in records:
        with np.load(out / "cases" / f"{r['case_id']}.npz") as f:
            arrays.append({name: f[name] for name in ("mean", "std", "truth")})
    return {name: np.stack([a[name] for a in arrays]) for name in ("mean", "std", "truth")}


def write_volume_outputs(out: Path, records: list[dict], dataset) -> list[dict]:
    """Volumes of fastMRI and NIfTI datasets: metrics (fastMRI's functions), submissions or NIfTI files."""
    from invsolve.datasets.fastmri_submission import volume_metrics, write_submission

    volume_rows: list[dict] = []
    if dataset.kind not in ("fastmri", "nifti"):
        return volume_rows  # one slice per item: the per-slice table says it all
    for (slug, group), recs in _volumes(out, records).items():
        stacks = _stacks(out, recs)
        target, mean = stacks["truth"], stacks["mean"]
        first = recs[0]
        row = {"run": slug, "group": group, "slices": len(recs), "operator": first["operator"],
               "prior": first["prior"], "method": first["method"], "seed": first["seed"]}
        row.update({k: float(v) for k, v in volume_metrics(target, mean).items()})
        volume_rows.append(row)
        if first["dataset"] == "fastmri":
            write_submission(out / "submission" / slug, group, mean.astype(np.float32), overwrite=True)
            _write_target(out / "submission" / "targets" / group, target, first.get("challenge", "multicoil"))
        elif first["dataset"] == "nifti":
            _write_nifti_volume(out / "volumes" / slug, recs, stacks, dataset)
    return volume_rows


def _write_target(path: Path, target: np.ndarray, challenge: str) -> None:
    if path.is_file():
        return
    key = "reconstruction_rss" if challenge == "multicoil" else "reconstruction_esc"
    with atomic_h5(path) as f:
        f.create_dataset(key, data=target.astype(np.float32))
        f.attrs["max"] = float(target.max())
        f.attrs["norm"] = float(np.linalg.norm(target))


def _write_nifti_volume(folder: Path, recs: list[dict], stacks: dict[str, np.ndarray], dataset) -> None:
    """Mean and std of a NIfTI volume on the input's grid, with the input's header (needs every slice)."""
    from invsolve.datasets.nifti import read_nifti, slice_axis, write_nifti
    from invsolve.pipeline.items import slices_to_volume

    first = recs[0]
    source = read_nifti(first["path"], volume=first["volume"])
    axis = slice_axis(source, dataset.get("plane", "axial"))
    if len(recs) != source.shape[axis]:
        return  # a subset of slices is not a volume; the per-slice results still hold
    stem = re.sub(r"(\.nii(\.gz)?)$", "", Path(first["path"]).name)
    suffix = f"-vol{first['volume']}" if first["volume"] is not None else ""
    for name in ("mean", "std"):
        data = slices_to_volume(stacks[name], first, axis, source.shape[:3], is_std=name == "std")
        write_nifti(folder / f"{stem}{suffix}_{name}.nii.gz", data, like=source, dtype="float32", overwrite=True)


def write_report(out: Path, config, cases) -> list[dict]:
    """Rebuild every merged output from the case records; returns the rows in case order."""
    records = load_records(out, cases)
    write_text_atomic(out / "results.csv", _csv(records, COLUMNS))
    volume_rows = write_volume_outputs(out, records, config.dataset)
    vcols = ("run", "group", "slices", "operator", "prior", "method", "seed", "NMSE", "PSNR", "SSIM")
    write_text_atomic(out / "volumes.csv", _csv(volume_rows, vcols))
    write_text_atomic(out / "results.md", _results_markdown(records))
    write_text_atomic(out / "summary.md", summary_markdown(records, volume_rows, config.name))
    if config.figures:
        summary_figure(out / "figures" / "summary.png", records)
    return records


def _results_markdown(records: list[dict]) -> str:
    lines = ["| item | operator | prior | method | seed | PSNR | SSIM | NMSE | std | NFE | s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['item']} | {r['operator']} | {r['prior']} | {r['method']} | {r['seed']} | "
                     f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4g} | {r['mean_std']:.4g} | {r['nfe']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def _figure_to(path: Path, fig) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def case_figure(path: Path, record: dict, arrays: dict[str, np.ndarray]) -> None:
    """Truth, posterior mean, posterior std and absolute error of one case, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, mean, std = arrays["truth"], arrays["mean"], arrays["std"]
    vmax = float(truth.max()) or 1.0
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    panels = (("truth", truth, 0, vmax, "gray"), (f"mean ({record['psnr']:.1f} dB)", mean, 0, vmax, "gray"),
              ("std", np.nan_to_num(std), 0, None, "magma"), ("|error|", np.abs(mean - truth), 0, None, "magma"))
    for ax, (title, image, lo, hi, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{record['item']} | {record['operator']} | {record['method']}", fontsize=9)
    fig.tight_layout()
    _figure_to(path, fig)


def summary_figure(path: Path, records: list[dict]) -> None:
    """PSNR per method, one panel per operator (box plots over slices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    operators = list(dict.fromkeys(r["operator"] for r in records))
    fig, axes = plt.subplots(1, len(operators), figsize=(4.5 * len(operators), 3.5), squeeze=False)
    several_priors = len({r["prior"] for r in records}) > 1
    for ax, op in zip(axes[0], operators):
        methods = list(dict.fromkeys((r["method"], r["prior"]) for r in records if r["operator"] == op))
        data = [[r["psnr"] for r in records if r["operator"] == op and (r["method"], r["prior"]) == m]
                for m in methods]
        labels = [method.split(" (")[0] + (f" [{prior}]" if several_priors else "") for method, prior in methods]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(methods) + 1), labels, rotation=30, fontsize=8)
        ax.set_title(op, fontsize=9)
        ax.set_ylabel("PSNR (dB)")
    fig.tight_layout()
    _figure_to(path, fig)
