"""DiffusionMBIR against slice-wise 2D posterior sampling, 3D TV and FBP on held-out 3D ellipsoid phantoms.

Sparse-view parallel-beam CT (8 views per slice, 1% noise) of 64x64x64 random-ellipsoid volumes; the
default 2D prior (trained on 2D ellipse phantoms) acts on axial slices. Methods: FBP; 3D TV (ADMM-free
primal-dual, 300 iterations); slice-wise RED-Diff (the 2D sampler on every slice independently, through
``SliceStackPrior``); DiffusionMBIR (:func:`invsolve.samplers.mbir3d`). The mbir3d settings (lam 0.5,
rho 10, 5 CG iterations, 100 steps) were chosen on a separate volume (seed 5, 32 slices), not on these.
Metrics: PSNR and SSIM (fastMRI definitions, data range = the volume's maximum) averaged over the slices
of each plane: axial (the prior's plane), coronal and sagittal.

    OMP_NUM_THREADS=2 python experiments/mbir3d_quality.py --volumes 2 --out experiments/results/mbir3d_quality.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from invsolve import GaussianNoise, Measurement
from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.datasets import random_ellipsoids
from invsolve.metrics import psnr, ssim
from invsolve.operators import ParallelBeamCT3D, sparse_view_angles
from invsolve.priors import SliceStackPrior, load_default_prior
from invsolve.samplers import mbir3d, red_diff

PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}
HELD_OUT_SEEDS = 100  # volumes 100, 101, ...: never used for training or tuning


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
            label = name if name == "truth" else f"{name}: {metrics[name][plane + '_psnr']:.1f} dB"
            axes[r, c].set_title(f"{label} ({plane})", fontsize=8)
            axes[r, c].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(seed: int, steps: int, depth: int, figure: Path | None = None) -> dict[str, dict]:
    volume = random_ellipsoids((depth, 64, 64), torch.Generator().manual_seed(seed))[None]
    op = ParallelBeamCT3D(sparse_view_angles(8), (depth, 64, 64))
    with torch.no_grad():
        clean = op.A(volume)
    noise = GaussianNoise(0.01 * float(clean.square().mean().sqrt()))
    meas = Measurement(op, noise, noise.sample(clean, torch.Generator().manual_seed(seed + 1)))
    prior = SliceStackPrior(load_default_prior(), depth, chunk=12)
    methods = {
        "FBP": lambda: op.fbp(meas.y),
        "3D TV": lambda: tv_reconstruct(op, meas.y, 0.1, iterations=300, spatial_dims=3, nonnegative=True),
        "slice-wise RED-Diff": lambda: red_diff(meas, prior, steps=steps, generator=torch.Generator().manual_seed(seed),
                                                lr=0.02, lam=16.0).samples[0],
        "DiffusionMBIR": lambda: mbir3d(meas, prior, steps=steps, generator=torch.Generator().manual_seed(seed),
                                        lam=0.5, rho=10.0, cg_iterations=5).samples[0],
    }
    results, recons = {}, {}
    truth = volume[0, 0].numpy()
    for name, method in methods.items():
        start = time.perf_counter()
        with torch.no_grad() if name in ("FBP", "3D TV") else torch.enable_grad():
            recon = method()
        seconds = time.perf_counter() - start
        recon = recon.reshape(depth, 64, 64).detach().clamp(0, 1).numpy()
        results[name] = {**plane_metrics(truth, recon), "seconds": seconds}
        recons[name] = recon
        print(seed, name, json.dumps(results[name]), flush=True)
    if figure is not None:
        three_plane_figure(figure, truth, recons, results)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    figure = args.out.with_suffix(".png") if args.out else None
    per_volume = [run(HELD_OUT_SEEDS + v, args.steps, args.depth, figure if v == 0 else None)
                  for v in range(args.volumes)]
    names = list(per_volume[0])
    lines = [f"Command: `python experiments/mbir3d_quality.py {' '.join(sys.argv[1:])}` "
             f"({torch.get_num_threads()} threads, CPU). {args.volumes} held-out 64x64x{args.depth} ellipsoid volumes "
             f"(seeds {HELD_OUT_SEEDS}..), CT 8 views, 1% noise, {args.steps} steps. Mean over volumes of the "
             "per-plane slice means; three-plane views of the first volume: `mbir3d_quality.png`.", "",
             "| method | axial PSNR | coronal PSNR | sagittal PSNR | axial SSIM | coronal SSIM | sagittal SSIM | s / volume |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        m = {k: float(np.mean([v[name][k] for v in per_volume])) for k in per_volume[0][name]}
        lines.append(f"| {name} | {m['axial_psnr']:.2f} | {m['coronal_psnr']:.2f} | {m['sagittal_psnr']:.2f} | "
                     f"{m['axial_ssim']:.4f} | {m['coronal_ssim']:.4f} | {m['sagittal_ssim']:.4f} | {m['seconds']:.0f} |")
    lines += ["", "Per volume: `" + json.dumps(per_volume) + "`"]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
