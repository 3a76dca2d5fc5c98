"""DiffusionMBIR against slice-wise 2D posterior sampling, 3D TV and FBP / zero-filled on held-out 3D phantoms.

Volumes: 64 slices of 64x64 random ellipsoids (seeds 100, 101, ...; never used for training or tuning).
A 2D slice prior acts on the axial slices (see "Slice priors" below). Problems (1% noise):

- ``ct-sparse``: parallel-beam CT, 8 views over 180 degrees, every slice;
- ``ct-limited``: parallel-beam CT, 30 views over a 90-degree wedge (3-degree steps);
- ``mri-2d-mask``: 3D Cartesian MRI (3D FFT), one random-column mask (8x, 4% centre) for every slice;
- ``mri-3d-mask``: 3D Cartesian MRI with a 3D mask: a variable-density Poisson-disc pattern over the
  (k_z, k_y) phase-encode plane (8x), k_x fully sampled, so slices are coupled through k_z.

Methods: FBP / zero-filled; two 3D TV baselines, each with weights chosen per problem from a grid by the
mean SSIM on the tuning volume (seed 5, 32 slices): isotropic TV by primal-dual (300 iterations,
non-negative) and anisotropic TV by ADMM (the ADMM iteration of DiffusionMBIR run 200 times with no
prior, separate weights along z and in-plane); slice-wise RED-Diff (the 2D sampler on every slice
independently through ``SliceStackPrior``, 100 steps, settings of the 2D benchmark); with ``--ablation``
slice-wise DDS (``mbir3d`` with ``lam = 0``: CG data term, no coupling); DiffusionMBIR as in the paper
(TV along z only, the sampler's defaults) and DiffusionMBIR + in-plane TV (``lam_xy``), both settings
chosen on the sparse-view CT tuning volume with the default prior; with ``--tune-mbir`` the in-plane
variant's ``(lam, lam_xy)`` are chosen per problem on the tuning volume, like the TV weights. Metrics:
PSNR and SSIM (fastMRI definitions, data range = the volume's maximum) averaged over the non-empty
slices of each plane: axial (the prior's plane), coronal and sagittal.

Slice priors: the shipped default prior (trained on 2D ellipse phantoms, a different distribution from
the slices of ellipsoid volumes), or with ``--prior`` a prior trained on the axial slices of training
volumes, as DiffusionMBIR trains its prior (``invsolve/weights/ellipsoid_slice_prior.pt``: the default
prior fine-tuned on slices of ``EllipsoidSlices`` volumes, seeds hashed from ``(0, v)``, never the
held-out or tuning seeds; recipe in its JSON file).

    OMP_NUM_THREADS=2 python experiments/mbir3d_quality.py --problem ct-sparse --volumes 3
    OMP_NUM_THREADS=2 python experiments/mbir3d_quality.py --summary   # tables -> experiments/results/mbir3d_quality.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from invsolve import GaussianNoise, Measurement
from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.datasets import random_ellipsoids
from invsolve.pipeline.tuned import tuned_settings
from invsolve.metrics import psnr, ssim
from invsolve.operators import (ParallelBeamCT3D, RealToComplex, SingleCoilMRI, fastmri_mask, limited_angle_angles,
                                poisson_disc_mask, sparse_view_angles)
from invsolve.operators.base import LinearOperator
from invsolve.priors import SliceStackPrior, load_default_prior
from invsolve.priors.edm import EDMPrior
from invsolve.samplers import mbir3d, red_diff
from invsolve.samplers.mbir3d import admm_tv_step
from invsolve.pipeline.catalogue import magnitude

PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}
HELD_OUT_SEEDS = 100  # volumes 100, 101, ...: never used for training or tuning
TUNING_SEED, TUNING_DEPTH = 5, 32
SIZE = 64
RESULTS = Path(__file__).parent / "results"
TV_GRID = (1e-4, 3e-4, 1e-3, 0.003, 0.01, 0.03, 0.1, 0.3)  # isotropic, absolute
TV_Z_GRID = (1e-4, 3e-4, 1e-3)  # anisotropic, relative to ||A||^2
TV_XY_GRID = (1e-4, 2e-4, 4e-4, 1e-3)


@dataclass(frozen=True)
class Problem:
    """A 3D operator family with the baseline and sampler settings used for it."""

    build: Callable[[int, int], tuple[LinearOperator, Callable[[torch.Tensor], torch.Tensor]]]  # (depth, seed)
    baseline: str
    red_diff: dict
    mbir3d: dict = field(default_factory=dict)


def _ct(angles: torch.Tensor):
    def build(depth: int, seed: int):
        op = ParallelBeamCT3D(angles, (depth, SIZE, SIZE))
        return op, op.fbp
    return build


def _mri(mask_for: Callable[[int, int], torch.Tensor]):
    def build(depth: int, seed: int):
        mri = SingleCoilMRI(mask_for(depth, seed), (depth, SIZE, SIZE))
        op = mri @ RealToComplex((1, depth, SIZE, SIZE))
        return op, lambda y: magnitude(mri.zero_filled(y))
    return build


def _column_mask(depth: int, seed: int) -> torch.Tensor:
    """One random-column mask (8x, 4% centre) of the (H, W) plane, the same at every depth (readout along z)."""
    return fastmri_mask((SIZE, SIZE), 8, 0.04, "random", seed)


def _kz_ky_mask(depth: int, seed: int) -> torch.Tensor:
    """A (D, H, W) mask: Poisson-disc (8x) over (k_z, k_y), every k_x."""
    return poisson_disc_mask((depth, SIZE), 8, 0.08, seed)[:, :, None].expand(depth, SIZE, SIZE).contiguous()


PROBLEMS = {
    "ct-sparse": Problem(_ct(sparse_view_angles(8)), "FBP", tuned_settings("red-diff", "ct", "default", 100).settings),
    "ct-limited": Problem(_ct(limited_angle_angles(30, 90.0)), "FBP", tuned_settings("red-diff", "ct", "default", 100).settings),
    "mri-2d-mask": Problem(_mri(_column_mask), "zero-filled", tuned_settings("red-diff", "mri", "default", 100).settings),
    "mri-3d-mask": Problem(_mri(_kz_ky_mask), "zero-filled", tuned_settings("red-diff", "mri", "default", 100).settings),
}
MBIR3D = {"lam": 1e-3, "admm_rho": 2e-2, "cg_iterations": 5, "admm_iterations": 2}  # the sampler's defaults
IN_PLANE_TV = {"lam_xy": 4e-4, "admm_iterations": 4}  # "DiffusionMBIR + in-plane TV" (tuning volume, ct-sparse)
MBIR_GRID = [{"lam": lam, "lam_xy": lam_xy} for lam in (1e-4, 3e-4, 1e-3) for lam_xy in (2e-4, 4e-4)]  # --tune-mbir
RED_DIFF_STEPS = 100


DEFAULT_PRIOR_TEXT = "the default prior (2D ellipses)"


def load_prior(path: str | None):
    """The 2D prior of the slices: a prior file (``--prior``) or the shipped default prior."""
    return load_default_prior() if path is None else EDMPrior.from_checkpoint(path)


def measure(problem: Problem, depth: int, seed: int):
    """A held-out volume, its operator, noisy measurement (1% of the RMS of ``A x``) and baseline."""
    return measure_volume(problem, random_ellipsoids((depth, SIZE, SIZE), torch.Generator().manual_seed(seed))[None],
                          seed)


def measure_volume(problem: Problem, volume: torch.Tensor, seed: int):
    """``volume (1, 1, D, H, W)``, its operator, noisy measurement (1% of the RMS of ``A x``, noise seeded by
    ``seed + 1``) and baseline reconstruction."""
    op, baseline = problem.build(volume.shape[-3], seed)
    with torch.no_grad():
        clean = op.A(volume)
    noise = GaussianNoise(0.01 * float(clean.square().mean().sqrt()))
    return volume, Measurement(op, noise, noise.sample(clean, torch.Generator().manual_seed(seed + 1))), baseline


def plane_metrics(truth: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """Mean PSNR / SSIM over the slices of each plane of ``(D, H, W)`` volumes (data range: the volume max)."""
    rng = float(truth.max())
    out = {}
    for plane, axis in PLANES.items():
        t, r = np.moveaxis(truth, axis, 0), np.moveaxis(recon, axis, 0)
        keep = [i for i in range(t.shape[0]) if t[i].max() > 0]  # slices outside the body are empty
        out[f"{plane}_psnr"] = float(np.mean([psnr(t[i], r[i], data_range=rng) for i in keep]))
        out[f"{plane}_ssim"] = float(np.mean([ssim(t[i], r[i], data_range=rng) for i in keep]))
    return out


def mean_ssim(metrics: dict[str, float]) -> float:
    return float(np.mean([metrics[f"{p}_ssim"] for p in PLANES]))


def operator_norm(op: LinearOperator) -> float:
    """``||A||`` by power iteration, seeded as :func:`mbir3d` seeds it (computed once per operator here)."""
    return op.operator_norm(generator=torch.Generator().manual_seed(0))


def anisotropic_tv(meas: Measurement, lam_z: float, lam_xy: float, norm: float, iterations: int = 200) -> torch.Tensor:
    """3D TV by ADMM: ``1/2 ||y - A x||^2 + ||A||^2 (lam_z ||D_z x||_1 + lam_xy (||D_y x||_1 + ||D_x x||_1))``.

    The ADMM iteration of DiffusionMBIR (same weights' units, rho and CG) run to convergence with no
    diffusion prior: the "3D TV (ADMM)" baseline, and the ablation of the prior.
    """
    op = meas.operator
    norm2 = norm**2
    weights = {-3: lam_z * norm2, -2: lam_xy * norm2, -1: lam_xy * norm2}
    x = torch.zeros(1, *op.x_shape)
    z = u = torch.zeros(3, *x.shape)
    for _ in range(iterations):
        x, z, u = admm_tv_step(x, z, u, op, meas.y, weights=weights, admm_rho=MBIR3D["admm_rho"] * norm2,
                               cg_iterations=MBIR3D["cg_iterations"])
    return x


def isotropic_tv(meas: Measurement, lam: float) -> torch.Tensor:
    """Isotropic 3D TV by primal-dual (Chambolle-Pock), 300 iterations, non-negative."""
    return tv_reconstruct(meas.operator, meas.y, lam, iterations=300, spatial_dims=3, nonnegative=True)


def tuning_case(problem: Problem) -> tuple[Measurement, Callable[[torch.Tensor], float]]:
    """The tuning volume's measurement and its score: mean three-plane SSIM of a reconstruction."""
    volume, meas, _ = measure(problem, TUNING_DEPTH, TUNING_SEED)
    truth = volume[0, 0].numpy()

    def score(recon: torch.Tensor) -> float:
        return mean_ssim(plane_metrics(truth, recon.reshape(truth.shape).clamp(0, 1).numpy()))
    return meas, score


def tune_tv(problem: Problem) -> dict:
    """TV weights with the best mean three-plane SSIM on the tuning volume (isotropic and anisotropic)."""
    meas, score = tuning_case(problem)
    iso = {lam: score(isotropic_tv(meas, lam)) for lam in TV_GRID}
    norm = operator_norm(meas.operator)
    aniso = {(lz, lxy): score(anisotropic_tv(meas, lz, lxy, norm)) for lz in TV_Z_GRID for lxy in TV_XY_GRID}
    print("3D TV tuning (mean SSIM):", iso, {str(k): v for k, v in aniso.items()}, flush=True)
    return {"isotropic": max(iso, key=iso.get), "anisotropic": max(aniso, key=aniso.get)}


def tune_mbir(problem: Problem, prior2d, steps: int) -> dict:
    """DiffusionMBIR + in-plane TV weights (``MBIR_GRID``) with the best mean SSIM on the tuning volume."""
    meas, score = tuning_case(problem)
    prior = SliceStackPrior(prior2d, TUNING_DEPTH, chunk=12)
    base = {**MBIR3D, **problem.mbir3d, **IN_PLANE_TV, "operator_norm": operator_norm(meas.operator)}
    scores = {}
    for i, setting in enumerate(MBIR_GRID):
        with torch.no_grad():
            recon = mbir3d(meas, prior, steps=steps, generator=torch.Generator().manual_seed(TUNING_SEED),
                           **{**base, **setting}).samples[0]
        scores[i] = score(recon)
        print("DiffusionMBIR + in-plane TV tuning (mean SSIM):", setting, round(scores[i], 5), flush=True)
    return MBIR_GRID[max(scores, key=scores.get)]


def three_plane_figure(path: Path, truth: np.ndarray, recons: dict[str, np.ndarray], metrics: dict) -> None:
    """Middle axial, coronal and sagittal slices of the truth and of every method (one row each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"truth": truth, **recons}
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.4 * len(rows)))
    for r, (name, vol) in enumerate(rows.items()):
        for c, (plane, axis) in enumerate(PLANES.items()):
            image = np.take(vol, vol.shape[axis] // 2, axis=axis)
            axes[r, c].imshow(image, cmap="gray", vmin=0, vmax=float(truth.max()))
            label = plane if name == "truth" else f"{plane}: {metrics[name][plane + '_psnr']:.1f} dB"
            axes[r, c].set_title(label, fontsize=8)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_volume(problem: Problem, seed: int, depth: int, steps: int, tv: dict, figure: Path | None,
               ablation: bool, prior2d, in_plane_tv: dict) -> dict[str, dict]:
    volume, meas, baseline = measure(problem, depth, seed)
    prior = SliceStackPrior(prior2d, depth, chunk=12)
    mbir = {**MBIR3D, **problem.mbir3d}

    def sampler(fn, n_steps=steps, **kw):
        return lambda: fn(meas, prior, steps=n_steps, generator=torch.Generator().manual_seed(seed),
                          **kw).samples[0]

    norm = operator_norm(meas.operator)
    mbir = {**mbir, "operator_norm": norm}
    with_xy = {**mbir, **in_plane_tv}
    methods = {
        problem.baseline: lambda: baseline(meas.y),
        "3D TV (isotropic, PDHG)": lambda: isotropic_tv(meas, tv["isotropic"]),
        "3D TV (anisotropic, ADMM)": lambda: anisotropic_tv(meas, *tv["anisotropic"], norm),
        "slice-wise RED-Diff": sampler(red_diff, RED_DIFF_STEPS, **problem.red_diff),
        **({"slice-wise DDS (lam 0)": sampler(mbir3d, **{**mbir, "lam": 0.0})} if ablation else {}),
        "DiffusionMBIR (TV-z)": sampler(mbir3d, **mbir),
        "DiffusionMBIR + in-plane TV": sampler(mbir3d, **with_xy),
    }
    results, recons = {}, {}
    truth = volume[0, 0].numpy()
    for name, method in methods.items():
        start = time.perf_counter()
        with torch.enable_grad() if "RED-Diff" in name else torch.no_grad():
            recon = method()
        seconds = time.perf_counter() - start
        recon = recon.reshape(truth.shape).detach().clamp(0, 1).numpy()
        results[name] = {**plane_metrics(truth, recon), "seconds": seconds}
        recons[name] = recon
        print(seed, name, json.dumps(results[name]), flush=True)
    if figure is not None:
        three_plane_figure(figure, truth, recons, results)
    return results


def table(per_volume: list[dict[str, dict]]) -> list[str]:
    lines = ["| method | axial PSNR | coronal PSNR | sagittal PSNR | axial SSIM | coronal SSIM | sagittal SSIM "
             "| s / volume |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in per_volume[0]:
        m = {k: float(np.mean([v[name][k] for v in per_volume])) for k in per_volume[0][name]}
        lines.append(f"| {name} | {m['axial_psnr']:.2f} | {m['coronal_psnr']:.2f} | {m['sagittal_psnr']:.2f} | "
                     f"{m['axial_ssim']:.4f} | {m['coronal_ssim']:.4f} | {m['sagittal_ssim']:.4f} | "
                     f"{m['seconds']:.0f} |")
    return lines


def verdict(per_volume: list[dict[str, dict]]) -> list[str]:
    """Per-volume, per-plane comparisons of each DiffusionMBIR variant with the baselines the bar names."""
    lines = []
    ours = [name for name in per_volume[0] if name.startswith("DiffusionMBIR")]
    rivals = [("3D TV (isotropic, PDHG)", tuple(PLANES)), ("3D TV (anisotropic, ADMM)", tuple(PLANES)),
              ("slice-wise RED-Diff", ("coronal", "sagittal")), ("slice-wise DDS (lam 0)", ("coronal", "sagittal"))]
    for name in ours:
        for rival, planes in rivals:
            if rival not in per_volume[0]:
                continue
            for metric in ("psnr", "ssim"):
                diffs = [v[name][f"{p}_{metric}"] - v[rival][f"{p}_{metric}"] for v in per_volume for p in planes]
                lines.append(f"- {name} vs {rival}, {metric.upper()} on {'/'.join(planes)}: ahead in "
                             f"{sum(d > 0 for d in diffs)} of {len(diffs)} (volume, plane) pairs; "
                             f"difference min {min(diffs):+.4f}, mean {np.mean(diffs):+.4f}")
    return lines


def overview(records: dict[str, dict]) -> list[str]:
    """One row per result file: mean three-plane PSNR / SSIM of every method over the volumes."""
    baselines = ("FBP", "zero-filled")
    methods = list(dict.fromkeys("FBP / zero-filled" if m in baselines else m
                                 for r in records.values() for m in r["per_volume"][0]))
    lines = ["## Overview: mean over volumes and the three planes, PSNR (dB) / SSIM", "",
             "| run | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for stem, record in records.items():
        cells = []
        for m in methods:
            if m == "FBP / zero-filled":
                m = next(b for b in baselines if b in record["per_volume"][0])
            if m not in record["per_volume"][0]:
                cells.append("")
                continue
            ps = np.mean([v[m][f"{p}_psnr"] for v in record["per_volume"] for p in PLANES])
            ss = np.mean([v[m][f"{p}_ssim"] for v in record["per_volume"] for p in PLANES])
            cells.append(f"{ps:.2f} / {ss:.4f}")
        lines.append(f"| {stem} | " + " | ".join(cells) + " |")
    return lines + [""]


def result_stem(problem: str, tag: str | None) -> str:
    return problem if tag is None else f"{problem}-{tag}"


def summary() -> None:
    """Collect every problem's JSON (each prior's runs) into ``results/mbir3d_quality.md``."""
    parts = ["# DiffusionMBIR quality on held-out 3D ellipsoid phantoms", "",
             "Isotropic TV grid: 0.003-0.3 for the first ct-sparse and mri-3d-mask runs, 1e-4-0.3 for the later "
             "runs (small weights added for MRI); the anisotropic grid was the same for all.", "",
             "Commands: `OMP_NUM_THREADS=2 python experiments/mbir3d_quality.py --problem P --volumes N [options]` "
             "for each section below (the exact command heads it), then `--summary`.", "",
             "\n\n".join(__doc__.split("\n\n")[1:5]), ""]
    paths = sorted((RESULTS / "mbir3d").glob("*.json"), key=lambda p: (p.stem not in PROBLEMS, p.stem))
    records = {path.stem: json.loads(path.read_text()) for path in paths}
    parts += overview(records)
    for path in paths:
        record = records[path.stem]
        per_volume = record["per_volume"]
        prior = record.get("prior", DEFAULT_PRIOR_TEXT)
        tuned = " (tuned on the tuning volume)" if record.get("mbir_tuned") else ""
        parts += [f"## {path.stem}", "", f"`{record['command']}` ({record['threads']} threads, CPU): "
                  f"{len(per_volume)} volumes of 64x64x{record['depth']}, {record['steps']} steps; slice prior: "
                  f"{prior}; 3D TV weights {record['tv']}; DiffusionMBIR {json.dumps(record['mbir3d'])} (+ in-plane "
                  f"TV{tuned}: {json.dumps(record['in_plane_tv'])}). Figure: `mbir3d/{path.stem}.png` (first volume).",
                  "", *table(per_volume), "", *verdict(per_volume), ""]
    write_text_atomic(RESULTS / "mbir3d_quality.md", "\n".join(parts))
    print("\n".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=sorted(PROBLEMS))
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="DiffusionMBIR steps (RED-Diff: 100)")
    parser.add_argument("--prior", help="2D prior file for the slices (default: the shipped default prior)")
    parser.add_argument("--tag", help="suffix of the result files (runs with another prior or settings)")
    parser.add_argument("--tv-weights", type=json.loads,
                        help='3D TV weights as JSON, e.g. \'{"isotropic": 0.1, "anisotropic": [3e-4, 4e-4]}\' '
                             "(default: tuned on the tuning volume)")
    parser.add_argument("--tune-mbir", action="store_true",
                        help="choose DiffusionMBIR + in-plane TV's (lam, lam_xy) from MBIR_GRID on the tuning volume")
    parser.add_argument("--ablation", action="store_true", help="add slice-wise DDS (mbir3d with lam = 0)")
    parser.add_argument("--summary", action="store_true", help="write results/mbir3d_quality.md from the JSON files")
    args = parser.parse_args(argv)
    if args.summary:
        summary()
        return
    if args.problem is None:
        parser.error("--problem is required (or --summary)")
    if args.tv_weights is not None and (set(args.tv_weights) != {"isotropic", "anisotropic"}
                                        or len(args.tv_weights["anisotropic"]) != 2):
        parser.error("--tv-weights needs the keys 'isotropic' (a number) and 'anisotropic' ([lam_z, lam_xy])")
    problem = PROBLEMS[args.problem]
    prior2d = load_prior(args.prior)
    tv = tune_tv(problem) if args.tv_weights is None else args.tv_weights
    in_plane_tv = {**IN_PLANE_TV, **(tune_mbir(problem, prior2d, args.steps) if args.tune_mbir else {})}
    out = RESULTS / "mbir3d"
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(args.problem, args.tag)
    per_volume = [run_volume(problem, HELD_OUT_SEEDS + v, args.depth, args.steps, tv,
                             out / f"{stem}.png" if v == 0 else None, args.ablation, prior2d, in_plane_tv)
                  for v in range(args.volumes)]
    prior_text = DEFAULT_PRIOR_TEXT if args.prior is None else f"`{args.prior}`"
    record = {"command": f"python experiments/mbir3d_quality.py {' '.join(sys.argv[1:] if argv is None else argv)}",
              "threads": torch.get_num_threads(), "depth": args.depth, "steps": args.steps, "tv": tv,
              "prior": prior_text, "mbir_tuned": args.tune_mbir,
              "mbir3d": {**MBIR3D, **problem.mbir3d}, "in_plane_tv": in_plane_tv, "per_volume": per_volume}
    write_text_atomic(out / f"{stem}.json", json.dumps(record, indent=1))
    print("\n".join(table(per_volume) + verdict(per_volume)))


if __name__ == "__main__":
    main()
