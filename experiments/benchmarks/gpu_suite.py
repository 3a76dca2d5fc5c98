"""The GPU suite: time per step and peak memory of the main samplers at the sizes users run, fp32 and bf16.

One prepared run (at most 6 minutes on one GPU; ``--budget-s`` stops early and says what it skipped):

    python experiments/benchmarks/gpu_suite.py --device cuda --out "$OUT/gpu_suite.md"

and its CPU mode at reduced size (what a machine without a GPU can run; same code path):

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/gpu_suite.py --device cpu --size 64 \\
        --volumes 16,32 --particles 8 --steps 3 --out experiments/results/gpu_suite_cpu.md

Network: a randomly initialised ADM UNet of 21.6 M parameters (``bench_common.WIDE_256`` at the image size;
timing only). For each precision (float32; bfloat16 autocast of the network only, data consistency in float32:
``EDMPrior.with_execution(precision=...)``) and each case, the sampler runs ``--steps`` steps after a 2-step
warm-up, synchronised; its time per step is divided by the bare network's time per forward call at the same
batch (no grad), measured in the same run just before. Cases: DPS, PiGDM, RED-Diff, DDRM on 50% inpainting at
``size x size`` (batch 1), AFES with ``--particles`` particles on the same problem, and mbir3d (DiffusionMBIR, the
2D network over every slice, 8-view parallel-beam CT) on ``v^3`` volumes. Peak memory: CUDA's
``max_memory_allocated`` since the case started (blank on CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import invsolve  # noqa: F401  (applies the torchvision guard before deepinv is imported)
from bench_common import parameter_count, timed, wide_prior
from invsolve import GaussianNoise, Measurement
from invsolve._atomic import write_text_atomic
from invsolve.operators import Inpainting, ParallelBeamCT3D, sparse_view_angles
from invsolve.priors import SliceStackPrior
from invsolve.samplers import declarations, mbir3d

SAMPLERS_2D = ("dps", "pigdm", "red-diff", "ddrm")


def bare_forward_seconds(prior, batch: int, steps: int, device: torch.device) -> float:
    """Median seconds of one no-grad denoiser call on ``(batch, *shape)`` over ``steps`` noise levels."""
    x = torch.randn(batch, *prior.shape, device=device)
    times = []
    with torch.no_grad():
        prior.denoise(x, 1.0)  # warm-up
        for s in torch.logspace(1, -2, steps).tolist():
            times.append(timed(lambda: prior.denoise(x, s), device)[1])
    return statistics.median(times)


def inpainting_problem(size: int, device: torch.device) -> Measurement:
    g = torch.Generator(device="cpu").manual_seed(0)
    op = Inpainting.random((1, size, size), 0.5, g).to(device)
    truth = torch.rand(1, 1, size, size, generator=g).to(device)
    y = op.A(truth)
    return Measurement(op, GaussianNoise(0.01), y + 0.01 * torch.randn(y.shape, generator=g).to(device))


def ct3d_problem(depth: int, size: int, device: torch.device) -> tuple[Measurement, float]:
    g = torch.Generator(device="cpu").manual_seed(0)
    op = ParallelBeamCT3D(sparse_view_angles(8), (depth, size, size)).to(device)
    volume = torch.rand(1, 1, depth, size, size, generator=g).to(device)
    with torch.no_grad():
        y = op.A(volume)
    sigma = 0.01 * float(y.square().mean().sqrt())
    norm = op.operator_norm(generator=torch.Generator().manual_seed(0), iterations=10, device=device)
    return Measurement(op, GaussianNoise(sigma), y + sigma * torch.randn(y.shape, generator=g).to(device)), norm


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def run_case(run, steps: int, device: torch.device) -> tuple[float, float | None]:
    """``(seconds per step, peak GiB)`` of ``run(steps)`` after a 2-step warm-up."""
    run(2)
    reset_peak(device)
    _, seconds = timed(lambda: run(steps), device)
    return seconds / steps, peak_gib(device)


def mbir3d_case(base, v: int, precision: str, args, device: torch.device) -> dict:
    """mbir3d on a ``v^3`` volume (8-view CT) with the network at ``v x v`` over every slice; its tensors are freed
    on return, before the next case."""
    slice_prior = base if v == args.size else wide_prior(v, device)
    stack = SliceStackPrior(slice_prior.with_execution(precision=precision), v, chunk=args.chunk)
    meas3d, norm = ct3d_problem(v, v, device)
    gen = torch.Generator(device=device).manual_seed(0)
    volume = torch.randn(1, 1, v, v, v, device=device)
    with torch.no_grad():
        stack.denoise(volume, 1.0)
        floor = statistics.median(timed(lambda: stack.denoise(volume, s), device)[1] for s in (5.0, 1.0, 0.1))
    per_step, peak = run_case(lambda s: mbir3d(meas3d, stack, steps=s, generator=gen, operator_norm=norm),
                              max(2, args.steps // 3), device)
    return {"precision": precision, "sampler": "mbir3d", "problem": f"CT 8 views {v}^3", "batch": v,
            "seconds_per_step": per_step, "network_seconds": floor, "ratio": per_step / floor, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--volumes", default="128,256", help="mbir3d volume sizes v (v^3 voxels)")
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=64, help="mbir3d: slices per network call")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip the remaining cases past this")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    began = time.perf_counter()
    rows: list[dict] = []
    skipped: list[str] = []
    base = wide_prior(args.size, device)
    measurement = inpainting_problem(args.size, device)
    volumes = [int(v) for v in args.volumes.split(",") if v]

    def over_budget(label: str) -> bool:
        if time.perf_counter() - began > args.budget_s:
            skipped.append(label)
            return True
        return False

    for precision in args.precisions.split(","):
        prior = base.with_execution(precision=precision)
        floors = {b: bare_forward_seconds(prior, b, args.steps, device) for b in (1, args.particles)}
        for name in (*SAMPLERS_2D, "afes"):
            label = f"{name} {precision}"
            if over_budget(label):
                continue
            n = args.particles if name == "afes" else 1
            decl = declarations()[name]
            gen = torch.Generator(device=device).manual_seed(0)
            per_step, peak = run_case(
                lambda s: decl.run(measurement, prior, steps=s, n_samples=n, generator=gen), args.steps, device)
            rows.append({"precision": precision, "sampler": name, "problem": f"inpainting 50% {args.size}^2",
                         "batch": n, "seconds_per_step": per_step, "network_seconds": floors[n],
                         "ratio": per_step / floors[n], "peak_gib": peak})
            print(json.dumps(rows[-1]), flush=True)
        for v in volumes:
            label = f"mbir3d {v}^3 {precision}"
            if over_budget(label):
                continue
            rows.append(mbir3d_case(base, v, precision, args, device))
            print(json.dumps(rows[-1]), flush=True)
    text = to_markdown(rows, skipped, args, parameter_count(base), time.perf_counter() - began)
    print(text)
    if args.out:
        write_text_atomic(Path(args.out), text)
        write_text_atomic(Path(args.out).with_suffix(".json"), json.dumps(rows, indent=1))


def to_markdown(rows, skipped, args, parameters: int, wall: float) -> str:
    device = torch.device(args.device)
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    lines = ["# GPU suite: time per step / bare network time, and peak memory", "",
             f"Command: `python experiments/benchmarks/gpu_suite.py {' '.join(sys.argv[1:])}`", "",
             f"Device: {what}; torch {torch.__version__}. Network: ADM UNet, {parameters / 1e6:.1f} M parameters, "
             f"random weights. {args.steps} timed steps per case after a 2-step warm-up (mbir3d: "
             f"{max(2, args.steps // 3)}). Ratio = sampler time per step / one bare no-grad network call at the "
             f"same batch (mbir3d: one pass of the network over every slice). Whole run: {wall:.0f} s.", "",
             "| precision | sampler | problem | batch | s / step | network s / call | ratio | peak memory (GiB) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else ""
        lines.append(f"| {r['precision']} | {r['sampler']} | {r['problem']} | {r['batch']} | "
                     f"{r['seconds_per_step']:.4f} | {r['network_seconds']:.4f} | {r['ratio']:.2f} | {peak} |")
    if skipped:
        lines += ["", f"Skipped (past the {args.budget_s:.0f} s budget): {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
