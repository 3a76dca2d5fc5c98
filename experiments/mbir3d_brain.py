"""3D reconstruction with a 2D prior on held-out brain volumes: DiffusionMBIR's model sampled by DDS, against 3D TV.

Volumes (never used for training or tuning):

- held-out brains: ``brain_volume(split="heldout")`` of :mod:`invsolve.datasets.brain` (deformed, re-contrasted
  MNI152 anatomy above z = 125, a 5 mm gap from the training region), 12 axial slices of 64 x 64 with isotropic
  3.125 mm voxels (200 mm field of view), seeds 100, 101, ... The held-out band holds 30 mm of brain, so a slab
  of isotropic voxels holds about 10 slices of it; slices 1 mm apart (32 of them) were tried first and make the
  volume so smooth along z that TV along z is nearly exact, the TV-favoured construction this benchmark replaces;
- one real subject: the first frame of nibabel's EPI ``example4d.nii.gz`` (24 slices of 2.2 mm, read as NIfTI
  training data is read and resampled in-plane to 64 x 64).

Problems (1% noise; the operators of ``experiments/mbir3d_quality.py``): sparse-view CT (8 views),
limited-angle CT (30 views over a 90-degree wedge), 3D MRI with one 2D column mask for every slice (8x) and with
a 3D Poisson-disc (k_z, k_y) mask (8x).

Methods: FBP / zero-filled; isotropic 3D TV (PDHG) and anisotropic 3D TV (ADMM); the slice-wise 2D sampler
(the same sampler with ``lam = 0``: every slice its own 2D posterior sample with a CG data term); DiffusionMBIR
(the 2D prior with TV along z) and its in-plane-TV variant (``lam_xy``), sampled by ``--sampler`` (default: the
DDS fast path ``dds3d``, 50 steps). Every weight (TV, ``lam``, ``lam_xy``) is chosen per problem by the mean
three-plane PSNR on a tuning volume of the tuning split (seed 5, the 12-slice slab ending at z = 120), so the baselines
and the samplers are tuned the same way. The slice prior is ``--prior`` (default: ``brain_slice``, the brain prior
fine-tuned on axial slices of training volumes). Metrics: PSNR and SSIM (data range: the volume's maximum)
averaged over the non-empty slices of each plane; intervals are 95% t-intervals over the volumes.

``--seen-anatomy`` runs the control set instead: the tuning volume's slab (below z = 120, anatomy the prior was
trained on) under new deformation and contrast draws (seeds 200, ...), with the weights tuned for the bar.

``--curve`` measures quality against the number of steps for DDS and for DiffusionMBIR as published (ADMM on
the noisy iterate, one CG and one ADMM iteration per step) on the first held-out volume.

    OMP_NUM_THREADS=2 python experiments/mbir3d_brain.py --problem ct-sparse
    OMP_NUM_THREADS=2 python experiments/mbir3d_brain.py --problem ct-sparse --curve 25,50,100,200,500 \
        --curve-published 100,1000 --tuned-from experiments/results/mbir3d_brain/ct-sparse.json
    python experiments/mbir3d_brain.py --summary   # -> experiments/results/mbir3d_brain.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mbir3d_quality as base  # noqa: E402  (operators, TV baselines, metrics and figure of the ellipsoid bar)

from invsolve._atomic import write_text_atomic  # noqa: E402
from invsolve.datasets.brain import (FIELD_OF_VIEW_MM, TRAIN_Z_MAX, BrainTemplates, brain_volume,  # noqa: E402
                                    real_subject_paths)
from invsolve.datasets.training_data import NiftiSlices  # noqa: E402
from invsolve.priors import SliceStackPrior  # noqa: E402
from invsolve.priors.default import load_shipped_prior  # noqa: E402
from invsolve.samplers import dds3d, mbir3d  # noqa: E402

SAMPLERS = {"dds3d": dds3d, "mbir3d": mbir3d}
RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "mbir3d_brain"
HELD_OUT_SEED, TUNING_SEED, SEEN_SEED = 100, 5, 200
DEPTH = 12  # isotropic voxels (3.125 mm): the slab covers the held-out band's brain
CHUNK = 16
TV_Z = "DiffusionMBIR (TV-z)"
IN_PLANE = "DiffusionMBIR + in-plane TV"
SLICE_WISE = "slice-wise 2D (lam 0)"
TV_ISO, TV_ANISO = "3D TV (isotropic, PDHG)", "3D TV (anisotropic, ADMM)"
#: (lam) for the TV-z variant and (lam, lam_xy) for the in-plane variant, relative to ||A||^2.
LAM_GRID = (3e-5, 1e-4, 3e-4, 1e-3)
IN_PLANE_GRID = tuple((lam, lam_xy) for lam in (1e-4, 3e-4, 1e-3) for lam_xy in (1e-4, 2e-4, 4e-4))
TV_Z_GRID = (1e-4, 3e-4, 1e-3, 3e-3)  # anisotropic 3D TV, relative to ||A||^2 (x base.TV_XY_GRID in-plane)
SAMPLER_BASE = {"admm_rho": 2e-2, "cg_iterations": 5, "admm_iterations": 2}
IN_PLANE_ADMM = {"admm_iterations": 4}
#: DiffusionMBIR as published (Chung et al., CVPR 2023, Algorithm 1): ADMM on the noisy iterate, 1 CG, 1 ADMM.
PAPER_FORM = {"consistency": "iterate", "cg_iterations": 1, "admm_iterations": 1}


def heldout_volume(templates: BrainTemplates, v: int) -> torch.Tensor:
    """Held-out brain volume ``v``, ``(1, 1, 12, 64, 64)``."""
    return brain_volume(templates, torch.Generator().manual_seed(HELD_OUT_SEED + v), base.SIZE, DEPTH,
                        split="heldout")[None]


def tuning_volume(templates: BrainTemplates) -> torch.Tensor:
    """The tuning split's slab nearest the held-out band (its top, ending at z = 120), ``(1, 1, 12, 64, 64)``.

    A drawn slab can fall anywhere below z = 120 (seed 5 draws the cerebellum: mostly empty slices), anatomy
    unlike the held-out band's; the top slab holds cortex and the lateral ventricles, as the band does.
    """
    return top_tuning_slab(templates, TUNING_SEED)


def top_tuning_slab(templates: BrainTemplates, seed: int) -> torch.Tensor:
    """The tuning split's 12-slice slab ending at z = 120, drawn with ``seed``: ``(1, 1, 12, 64, 64)``."""
    thickness = DEPTH * FIELD_OF_VIEW_MM / base.SIZE
    return brain_volume(templates, torch.Generator().manual_seed(seed), base.SIZE, DEPTH, split="tuning",
                        centre_z=TRAIN_Z_MAX - thickness / 2)[None]


def real_subject_volume() -> torch.Tensor:
    """The first frame of ``example4d.nii.gz``, every axial slice resampled to 64 x 64: ``(1, 1, 24, 64, 64)``."""
    data = NiftiSlices([str(real_subject_paths()[0])], base.SIZE, axis=2)
    slices = [data[i] for i, (_, frame, _) in enumerate(data.items) if frame == 0]
    return torch.stack(slices, dim=1)[None].float()


def seen_anatomy_volume(templates: BrainTemplates, v: int) -> torch.Tensor:
    """The control set: the tuning volume's slab (anatomy the prior was trained on) with new draws, seed 200 + v."""
    return top_tuning_slab(templates, SEEN_SEED + v)


def volumes(count: int, seen: bool = False) -> dict[str, torch.Tensor]:
    templates = BrainTemplates()
    if seen:
        return {f"seen anatomy {SEEN_SEED + v}": seen_anatomy_volume(templates, v) for v in range(count)}
    out = {f"held-out {HELD_OUT_SEED + v}": heldout_volume(templates, v) for v in range(count)}
    return {**out, "example4d (real EPI)": real_subject_volume()}


def score(truth: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    t = truth[0, 0].numpy()
    return base.plane_metrics(t, recon.reshape(t.shape).detach().clamp(0, 1).numpy())


def mean_psnr(metrics: dict[str, float]) -> float:
    return float(np.mean([metrics[f"{p}_psnr"] for p in base.PLANES]))


def sample(sampler: str, meas, prior2d, seed: int, steps: int, settings: dict) -> torch.Tensor:
    prior = SliceStackPrior(prior2d, meas.operator.x_shape[1], chunk=CHUNK)
    with torch.no_grad():
        return SAMPLERS[sampler](meas, prior, steps=steps, generator=torch.Generator().manual_seed(seed),
                                 **settings).samples[0]


def tune(problem: base.Problem, prior2d, sampler: str, steps: int) -> dict:
    """Every weight chosen by the mean three-plane PSNR on the tuning volume."""
    truth, meas, _ = base.measure_volume(problem, tuning_volume(BrainTemplates()), TUNING_SEED)
    norm = base.operator_norm(meas.operator)
    psnr_of = lambda recon: mean_psnr(score(truth, recon))  # noqa: E731
    found: dict[str, dict] = {}
    iso = {lam: psnr_of(base.isotropic_tv(meas, lam)) for lam in base.TV_GRID}
    aniso = {(lz, lxy): psnr_of(base.anisotropic_tv(meas, lz, lxy, norm))
             for lz in TV_Z_GRID for lxy in base.TV_XY_GRID}
    found["tv"] = {"isotropic": max(iso, key=iso.get), "anisotropic": list(max(aniso, key=aniso.get))}
    common = {**SAMPLER_BASE, "operator_norm": norm}
    tv_z = {lam: psnr_of(sample(sampler, meas, prior2d, TUNING_SEED, steps, {**common, "lam": lam}))
            for lam in LAM_GRID}
    in_plane = {pair: psnr_of(sample(sampler, meas, prior2d, TUNING_SEED, steps,
                                     {**common, **IN_PLANE_ADMM, "lam": pair[0], "lam_xy": pair[1]}))
                for pair in IN_PLANE_GRID}
    found["lam"] = max(tv_z, key=tv_z.get)
    found["in_plane"] = list(max(in_plane, key=in_plane.get))
    found["scores"] = {"isotropic": iso, "anisotropic": {str(k): v for k, v in aniso.items()},
                       "tv_z": tv_z, "in_plane": {str(k): v for k, v in in_plane.items()}}
    print("tuning:", json.dumps(found, default=str), flush=True)
    return found


def run_volume(problem: base.Problem, name: str, volume: torch.Tensor, seed: int, tuned: dict, prior2d,
               sampler: str, steps: int, figure: Path | None) -> dict[str, dict]:
    truth, meas, baseline = base.measure_volume(problem, volume, seed)
    norm = base.operator_norm(meas.operator)
    common = {**SAMPLER_BASE, "operator_norm": norm}
    lam, lam_xy = tuned["in_plane"]
    methods = {
        problem.baseline: lambda: baseline(meas.y),
        TV_ISO: lambda: base.isotropic_tv(meas, tuned["tv"]["isotropic"]),
        TV_ANISO: lambda: base.anisotropic_tv(meas, *tuned["tv"]["anisotropic"], norm),
        SLICE_WISE: lambda: sample(sampler, meas, prior2d, seed, steps, {**common, "lam": 0.0}),
        TV_Z: lambda: sample(sampler, meas, prior2d, seed, steps, {**common, "lam": tuned["lam"]}),
        IN_PLANE: lambda: sample(sampler, meas, prior2d, seed, steps,
                                 {**common, **IN_PLANE_ADMM, "lam": lam, "lam_xy": lam_xy}),
    }
    results, recons = {}, {}
    for method, run in methods.items():
        start = time.perf_counter()
        with torch.no_grad():
            recon = run()
        results[method] = {**score(truth, recon), "seconds": time.perf_counter() - start}
        recons[method] = recon.reshape(truth.shape[2:]).clamp(0, 1).numpy()
        print(name, method, json.dumps(results[method]), flush=True)
    if figure is not None:
        base.three_plane_figure(figure, truth[0, 0].numpy(), recons, results)
    return results


def curve(problem: base.Problem, tuned: dict, prior2d, dds_steps: list[int],
          published_steps: list[int]) -> dict[str, dict]:
    """PSNR / SSIM against steps on the first held-out volume: DDS and DiffusionMBIR as published (TV-z)."""
    truth, meas, _ = base.measure_volume(problem, heldout_volume(BrainTemplates(), 0), HELD_OUT_SEED)
    common = {**SAMPLER_BASE, "operator_norm": base.operator_norm(meas.operator), "lam": tuned["lam"]}
    runs = [("DDS (dds3d)", "dds3d", {}, dds_steps),
            ("DiffusionMBIR as published (mbir3d, iterate)", "mbir3d", PAPER_FORM, published_steps)]
    out: dict[str, dict] = {label: {} for label, *_ in runs}
    for label, sampler, extra, step_counts in runs:
        for steps in step_counts:
            start = time.perf_counter()
            recon = sample(sampler, meas, prior2d, HELD_OUT_SEED, steps, {**common, **extra})
            out[label][steps] = {**score(truth, recon), "seconds": time.perf_counter() - start}
            print("curve", label, steps, json.dumps(out[label][steps]), flush=True)
    return out


def interval(values: list[float]) -> str:
    """``mean +- half-width`` of the 95% t-interval (the mean alone for one value)."""
    m = float(np.mean(values))
    if len(values) < 2:
        return f"{m:.2f}"
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return f"{m:.2f} +- {half:.2f}"


def table(per_volume: dict[str, dict[str, dict]]) -> list[str]:
    names = list(next(iter(per_volume.values())))
    lines = ["| method | axial PSNR | coronal PSNR | sagittal PSNR | mean PSNR | axial SSIM | coronal SSIM "
             "| sagittal SSIM | s / volume |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        rows = [v[name] for v in per_volume.values()]
        cells = [interval([r[f"{p}_psnr"] for r in rows]) for p in base.PLANES]
        cells.append(interval([mean_psnr(r) for r in rows]))
        cells += [f"{np.mean([r[f'{p}_ssim'] for r in rows]):.4f}" for p in base.PLANES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r['seconds'] for r in rows]):.0f} |")
    return lines


def verdict(per_volume: dict[str, dict[str, dict]]) -> list[str]:
    """The bar: each DiffusionMBIR variant against the better 3D TV (mean PSNR) and the slice-wise sampler."""
    rows = list(per_volume.values())
    best_tv = max((TV_ISO, TV_ANISO), key=lambda m: np.mean([mean_psnr(r[m]) for r in rows]))
    lines = [f"Better 3D TV here: {best_tv}."]
    for ours in (TV_Z, IN_PLANE):
        diffs = [mean_psnr(r[ours]) - mean_psnr(r[best_tv]) for r in rows]
        lines.append(f"- {ours} - {best_tv}, mean PSNR: {interval(diffs)} dB per volume "
                     f"({', '.join(f'{d:+.2f}' for d in diffs)}); bar (+1 dB): "
                     f"{'met' if np.mean(diffs) >= 1 else 'missed'}")
        for plane in ("coronal", "sagittal"):
            d = [r[ours][f"{plane}_psnr"] - r[SLICE_WISE][f"{plane}_psnr"] for r in rows]
            lines.append(f"- {ours} - {SLICE_WISE}, {plane} PSNR: {interval(d)} dB "
                         f"({'ahead' if np.mean(d) > 0 else 'behind'})")
    return lines


def curve_verdict(by_sampler: dict[str, dict]) -> list[str]:
    """The fast-path target: DDS at 50-100 steps within 0.5 dB (mean PSNR) of the best run of 200 steps or more."""
    runs = [(mean_psnr(m), label, int(steps)) for label, by_steps in by_sampler.items() for steps, m in by_steps.items()]
    long_runs = [r for r in runs if r[2] >= 200]
    if not long_runs:
        return []
    best = max(long_runs)
    dds = {steps: value for value, label, steps in runs if label.startswith("DDS") and steps in (50, 100)}
    if not dds:
        return []
    gap = best[0] - max(dds.values())
    return [f"Best long run: {best[1]} at {best[2]} steps, {best[0]:.2f} dB. DDS at "
            + ", ".join(f"{k} steps: {v:.2f} dB" for k, v in sorted(dds.items()))
            + f"; best long run minus the better of them: {gap:.2f} dB (target: within 0.5 dB: "
            + f"{'met' if gap <= 0.5 else 'missed'})."]


def overview(records: dict[str, dict]) -> list[str]:
    """One row per bar run: mean three-plane PSNR of the better TV, the slice-wise sampler and both variants."""
    lines = ["## Overview: mean three-plane PSNR (dB) over the volumes", "",
             "| run | better 3D TV | slice-wise 2D | DiffusionMBIR (TV-z) | + in-plane TV | better variant - better TV "
             "(95% CI over volumes) | bar (+1 dB) |", "|---|---:|---:|---:|---:|---:|---|"]
    for stem, record in records.items():
        if "curve" in record:
            continue
        rows = list(record["per_volume"].values())
        avg = lambda m: float(np.mean([mean_psnr(r[m]) for r in rows]))  # noqa: E731
        best_tv = max((TV_ISO, TV_ANISO), key=avg)
        ours = max((TV_Z, IN_PLANE), key=avg)
        diffs = [mean_psnr(r[ours]) - mean_psnr(r[best_tv]) for r in rows]
        lines.append(f"| {stem} | {avg(best_tv):.2f} ({'iso' if best_tv == TV_ISO else 'aniso'}) | "
                     f"{avg(SLICE_WISE):.2f} | {avg(TV_Z):.2f} | {avg(IN_PLANE):.2f} | {interval(diffs)} | "
                     f"{'met' if np.mean(diffs) >= 1 else 'missed'}{' (control set)' if 'seen' in stem else ''} |")
    return lines + [""]


def summary() -> None:
    parts = ["# 3D reconstruction with a 2D prior on held-out brain volumes", "",
             "\n\n".join(__doc__.split("\n\n")[1:7]), "",
             "The TV-favoured control, piecewise-constant ellipsoid volumes (3D TV's exact model), is "
             "`experiments/results/mbir3d_quality.md`, kept as it was.", "",
             "Commands: each section names its own; then `python experiments/mbir3d_brain.py --summary`.", ""]
    records = {path.stem: json.loads(path.read_text()) for path in sorted(OUT.glob("*.json"))}
    parts += overview(records)
    for stem, record in records.items():
        if "curve" in record:
            parts += [f"## Steps: {stem}", "", f"`{record['command']}` ({record['threads']} threads, CPU), "
                      f"TV-z weight lam = {record['tuned']['lam']}.", "",
                      "| sampler | steps | mean PSNR | axial | coronal | sagittal | mean SSIM | s |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for label, by_steps in record["curve"].items():
                for steps, m in by_steps.items():
                    parts.append(f"| {label} | {steps} | {mean_psnr(m):.2f} | {m['axial_psnr']:.2f} | "
                                 f"{m['coronal_psnr']:.2f} | {m['sagittal_psnr']:.2f} | "
                                 f"{np.mean([m[f'{p}_ssim'] for p in base.PLANES]):.4f} | {m['seconds']:.0f} |")
            parts += ["", *curve_verdict(record["curve"]), ""]
            continue
        per_volume = record["per_volume"]
        tuned = record["tuned"]
        parts += [f"## {stem}", "", f"`{record['command']}` ({record['threads']} threads, CPU): volumes "
                  f"{', '.join(per_volume)}; sampler {record['sampler']} at {record['steps']} steps; slice prior "
                  f"`{record['prior']}`; tuned: 3D TV {json.dumps(tuned['tv'])}, TV-z lam {tuned['lam']}, "
                  f"in-plane (lam, lam_xy) {tuned['in_plane']}. Figure: `mbir3d_brain/{stem}.png` (first "
                  "volume).", "", *table(per_volume), "", *verdict(per_volume), ""]
        synthetic = {k: v for k, v in per_volume.items() if k.startswith("held-out")}
        if 0 < len(synthetic) < len(per_volume):
            parts += ["Synthetic held-out volumes only:", "", *verdict(synthetic), ""]
    write_text_atomic(RESULTS / "mbir3d_brain.md", "\n".join(parts))
    print("\n".join(parts))


def step_counts(text: str) -> list[int]:
    """``"25,50,100"`` -> ``[25, 50, 100]`` (positive integers)."""
    counts = [int(v) for v in text.split(",")]
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"step counts must be positive integers, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=sorted(base.PROBLEMS))
    parser.add_argument("--volumes", type=int, default=3, help="held-out synthetic volumes (plus the real subject)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="dds3d")
    parser.add_argument("--prior", default="brain_slice", help="a shipped prior name (default: brain_slice)")
    parser.add_argument("--tuned-from", type=Path, help="a result JSON of this script whose tuned weights to reuse")
    parser.add_argument("--seen-anatomy", action="store_true",
                        help="the control set instead: the tuning slab's anatomy (below z = 120, which the prior was "
                             "trained on) under new deformation and contrast draws")
    parser.add_argument("--curve", type=step_counts,
                        help="comma-separated step counts: quality against steps instead of the bar")
    parser.add_argument("--curve-published", type=step_counts,
                        help="step counts of DiffusionMBIR as published in the curve (default: those of --curve)")
    parser.add_argument("--summary", action="store_true", help="write results/mbir3d_brain.md from the JSON files")
    args = parser.parse_args(argv)
    if args.summary:
        summary()
        return
    if args.problem is None:
        parser.error("--problem is required (or --summary)")
    problem = base.PROBLEMS[args.problem]
    prior2d = load_shipped_prior(args.prior)
    tuned = (json.loads(args.tuned_from.read_text())["tuned"] if args.tuned_from
             else tune(problem, prior2d, args.sampler, args.steps))
    OUT.mkdir(parents=True, exist_ok=True)
    command = f"python experiments/mbir3d_brain.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    record = {"command": command, "threads": torch.get_num_threads(), "prior": args.prior, "tuned": tuned}
    if args.curve:
        record["curve"] = curve(problem, tuned, prior2d, args.curve, args.curve_published or args.curve)
        write_text_atomic(OUT / f"{args.problem}-steps.json", json.dumps(record, indent=1, default=str))
        return
    per_volume = {}
    stem = f"{args.problem}-seen-anatomy" if args.seen_anatomy else args.problem
    for v, (name, volume) in enumerate(volumes(args.volumes, args.seen_anatomy).items()):
        figure = OUT / f"{stem}.png" if v == 0 else None
        per_volume[name] = run_volume(problem, name, volume, HELD_OUT_SEED + v, tuned, prior2d, args.sampler,
                                      args.steps, figure)
    record.update(sampler=args.sampler, steps=args.steps, per_volume=per_volume)
    write_text_atomic(OUT / f"{stem}.json", json.dumps(record, indent=1, default=str))
    print("\n".join(table(per_volume) + verdict(per_volume)))


if __name__ == "__main__":
    main()
