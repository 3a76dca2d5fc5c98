"""ADS against fixed-mask DPS, through the study runner: tune ADS on tuning data, then evaluate on held-out data.

1. **Tune** (tuning data only: phantoms of the sampler-tuning stream and synthetic fastMRI files made from
   it): every ADS variant of ``VARIANTS`` at 4x and 8x; the variant with the best mean SSIM over all
   tuning slices is kept.
2. **Evaluate** on held-out data (phantoms of the evaluation stream, single-coil; synthetic multi-coil
   fastMRI files of the evaluation stream, or a real fastMRI folder with ``--fastmri``): the chosen ADS
   against DPS with the equispaced, random-with-centre, variable-density and k-space-variance masks,
   all with the same prior, particles and steps; posterior-mean SSIM per slice.
3. **Report**: per data set and acceleration the mean ± 95% CI of SSIM and PSNR per method, the paired
   SSIM difference ADS - best baseline with its CI, the share of ADS time spent in selection, and a
   figure of the acquisition order over the reverse steps.

    python experiments/ads_quality_bar.py --out runs/ads --nproc 4 --device cuda
    python experiments/ads_quality_bar.py --out runs/ads_knee --fastmri /data/knee/multicoil_val --resize \\
        --skip-phantoms --variant "window=0.0,0.5"      # real data, a fixed variant
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from invsolve._atomic import write_text_atomic

#: ADS variants tried on the tuning data (window of reverse steps, criterion).
VARIANTS = [
    {"window": [0.0, 0.5]},
    {"window": [0.25, 0.75]},
    {"window": [0.5, 0.9]},
    {"window": [0.25, 0.75], "criterion": "variance"},
]
MASKS = ("equispaced", "random", "variable-density", "variance")
ACCELERATIONS = {4: "mri:acceleration=4", 8: "mri:acceleration=8,center_fraction=0.08"}


def _run_study(config: dict, out: Path, args) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
                if args.nproc > 1 else [sys.executable])
    cmd = [*launcher, "-m", "invsolve", "study", str(path), "--out", str(out / "study"), "--device", args.device,
           "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out / "study" / "results.csv") as f:
        ids = [r["case_id"] for r in csv.DictReader(f)]
    return [json.loads((out / "study" / "cases" / f"{i}.json").read_text()) for i in ids]  # full records


def _config(name: str, dataset: dict, masks: tuple[str, ...], samplers: list[dict]) -> dict:
    operators = [f"{spec},mask={m}" for spec in ACCELERATIONS.values() for m in masks]
    return {"name": name, "dataset": dataset, "operators": operators, "samplers": samplers, "figures": False}


def _ads(variant: dict, args) -> dict:
    return {"name": "ads", "steps": args.steps, "samples": args.particles, **variant}


def _ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0


def _acceleration(row: dict) -> str:
    return row["operator"].split()[1]


def _method(row: dict) -> str:
    return "ADS" if row["sampler"] == "ads" else f"DPS, {row['operator'].split('(')[1].rstrip(')')} mask"


def tune(args) -> dict:
    datasets = {"phantoms": {"kind": "phantoms", "seed": 3, "count": args.tune_items}}
    if args.tune_fastmri:
        datasets["fastmri"] = {"kind": "fastmri", "path": args.tune_fastmri, "max_items": args.tune_items}
    from invsolve.pipeline.methods import parse_method_spec

    index = {parse_method_spec(_ads(v, args)).label: i for i, v in enumerate(VARIANTS)}
    scores: dict[int, list[float]] = defaultdict(list)
    for name, dataset in datasets.items():
        rows = _run_study(_config(f"ADS tuning ({name})", dataset, ("active",),
                                  [_ads(v, args) for v in VARIANTS]), args.out / f"tune-{name}", args)
        for r in rows:
            scores[index[r["method"]]].append(float(r["ssim"]))
    means = {i: float(np.mean(s)) for i, s in scores.items()}
    best = max(means, key=means.get)
    return {"variants": VARIANTS, "mean_ssim": means, "chosen": VARIANTS[best]}


def evaluate(args, variant: dict) -> dict[str, list[dict]]:
    datasets = {}
    if not args.skip_phantoms:
        datasets["phantoms (single-coil)"] = {"kind": "phantoms", "seed": 4, "count": args.items}
    if args.fastmri:
        datasets["fastMRI-format (multi-coil)"] = {"kind": "fastmri", "path": args.fastmri, "max_items": args.items,
                                                   **({"resize": "prior"} if args.resize else {})}
    results = {}
    for i, (name, dataset) in enumerate(datasets.items()):
        samplers = [{"name": "dps", "steps": args.steps, "samples": args.particles}, _ads(variant, args)]
        results[name] = _run_study(_config(f"ADS vs fixed masks: {name}", dataset, (*MASKS, "active"), samplers),
                                   args.out / f"eval-{i}", args)
    return results


def report(args, tuning: dict, results: dict[str, list[dict]]) -> str:
    lines = ["# ADS (active diffusion subsampling) against fixed-mask DPS", "",
             f"Command: `python experiments/ads_quality_bar.py {' '.join(sys.argv[1:])}`", "",
             f"Every method: {args.particles} particles, {args.steps} steps, DPS guidance, the default prior. "
             "SSIM / PSNR of the posterior mean per slice (fastMRI definitions), mean ± 95% CI over slices.", ""]
    if tuning:
        lines += ["Tuning (mean SSIM over the tuning slices, 4x and 8x): " + ", ".join(
            f"{json.dumps(v)}: {tuning['mean_ssim'][i]:.4f}" for i, v in enumerate(tuning["variants"])
            if i in tuning["mean_ssim"]) + f". Chosen: `{json.dumps(tuning['chosen'])}`.", ""]
    lines += ["| data | acceleration | method | n | SSIM | PSNR (dB) | ADS SSIM − this (paired) |",
              "|---|---|---|---:|---:|---:|---:|"]
    verdicts = []
    for name, rows in results.items():
        for acc in sorted({_acceleration(r) for r in rows}, key=lambda a: float(a[:-1])):
            cell = [r for r in rows if _acceleration(r) == acc]
            by_method: dict[str, dict[str, float]] = defaultdict(dict)
            psnrs: dict[str, list[float]] = defaultdict(list)
            for r in cell:
                by_method[_method(r)][r["item"]] = float(r["ssim"])
                psnrs[_method(r)].append(float(r["psnr"]))
            ads = by_method["ADS"]
            wins = []
            for method, ssims in sorted(by_method.items(), key=lambda kv: kv[0] != "ADS"):
                m, h = _ci(list(ssims.values()))
                p, ph = _ci(psnrs[method])
                diff = ""
                if method != "ADS":
                    d = [ads[k] - ssims[k] for k in ssims if k in ads]
                    dm, dh = _ci(d)
                    diff = f"{dm:+.4f} ± {dh:.4f}"
                    wins.append(dm > 0)
                lines.append(f"| {name} | {acc} | {method} | {len(ssims)} | {m:.4f} ± {h:.4f} | {p:.2f} ± {ph:.2f} | {diff} |")
            verdicts.append(f"{name} {acc}: ADS mean SSIM above every fixed mask: {'yes' if all(wins) else 'no'}")
    ads_rows = [r for rows in results.values() for r in rows if r["sampler"] == "ads"]
    share = [float(r["selection_seconds"]) / float(r["seconds"]) for r in ads_rows if r.get("selection_seconds")]
    if share:
        lines += ["", f"Selection share of ADS time: {100 * np.mean(share):.2f}% (mean over {len(share)} runs; the "
                  "rest is network evaluations with backpropagation and the operators)."]
    lines += ["", *[f"- {v}" for v in verdicts], ""]
    return "\n".join(lines)


def order_figure(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [(name, r) for name, rows in results.items() for r in rows if r["sampler"] == "ads"]
    panels = list(dict.fromkeys((name, _acceleration(r)) for name, r in cells))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, acc) in zip(axes[0], panels):
        for _, r in [c for c in cells if c[0] == name and _acceleration(c[1]) == acc][:8]:
            order = r["acquisition_order"] or []
            ax.plot([s for s, _ in order], [c for _, c in order], ".", alpha=0.6)
        ax.set_title(f"{name}, {acc}", fontsize=9)
        ax.set_xlabel("reverse step")
        ax.set_ylabel("k-space column acquired")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fastmri", help="held-out fastMRI folder (synthetic or real)")
    parser.add_argument("--tune-fastmri", help="fastMRI folder for tuning (synthetic, tuning stream)")
    parser.add_argument("--resize", action="store_true", help="fastMRI data larger than the prior: resize: prior")
    parser.add_argument("--items", type=int, default=20, help="held-out slices per data set (default 20)")
    parser.add_argument("--tune-items", type=int, default=6)
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--nproc", type=int, default=1, help="torchrun processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-phantoms", action="store_true")
    parser.add_argument("--variant", help="skip tuning: e.g. 'window=0.25,0.75' or 'window=0.25,0.75;criterion=variance'")
    parser.add_argument("--results", type=Path, help="write the markdown table here too")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.variant:
        variant: dict = {}
        for part in args.variant.split(";"):
            key, _, value = part.partition("=")
            variant[key] = [float(v) for v in value.split(",")] if key == "window" else value
        tuning: dict = {}
    else:
        tuning = tune(args)
        variant = tuning["chosen"]
    results = evaluate(args, variant)
    text = report(args, tuning, results)
    write_text_atomic(args.out / "ads_quality_bar.md", text)
    order_figure(results, args.out / "ads_acquisition_order.png")
    if args.results:
        write_text_atomic(args.results, text)
        order_figure(results, args.results.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
