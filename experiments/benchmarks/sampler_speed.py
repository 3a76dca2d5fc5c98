"""Sampler overhead: wall time / (steps x one bare denoiser forward at the same batch), default prior, 64x64.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/sampler_speed.py \\
        --out experiments/results/sampler_speed.md

For each task and batch size, every round times, back to back: ``steps`` bare forward passes of the
prior's denoiser under ``torch.no_grad`` (the floor any sampler with one network call per step pays),
then each sampler for ``steps`` steps on the same measurement. The ratio sampler / floor is taken per
round (paired, so machine noise common to the round cancels) and the median over rounds is reported
with its min-max range. RED-Diff's target is <= 1.15 (issue 5); DPS and PiGDM, which backpropagate
through the network every step, are reported beside it, and DDRM (forward only).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from invsolve._atomic import write_text_atomic
from invsolve.pipeline.tuned import tuned_settings
from invsolve.priors.default import load_default_prior
from invsolve.samplers import ddrm, dps, pigdm, red_diff
from invsolve.tasks import SAMPLER_TUNING_SEED, phantoms, standard_tasks

SAMPLERS = {
    "RED-Diff": lambda m, p, t, steps, g: red_diff(m, p, steps=steps, generator=g, lr=0.02, lam=0.25),
    "DPS": lambda m, p, t, steps, g: dps(m, p, steps=steps, generator=g, zeta=tuned_settings("dps", t.kind, "default", 1000).settings["zeta"]),
    "PiGDM": lambda m, p, t, steps, g: pigdm(m, p, steps=steps, generator=g, data_variance=0.16, cg_max_iter=30),
    "DDRM": lambda m, p, t, steps, g: ddrm(m, p, steps=steps, generator=g, eta=1.0),
}


def bare_forward(prior, x: torch.Tensor, sigmas: list[float]) -> None:
    with torch.no_grad():
        for s in sigmas:
            prior.denoise(x, s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="Inpainting 50%,CT 8 views,MRI 4x")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    prior = load_default_prior()
    size = prior.shape[-1]
    names = [n.strip() for n in args.samplers.split(",")]
    rows = []
    for task in standard_tasks(size, SAMPLER_TUNING_SEED, names=tuple(n.strip() for n in args.tasks.split(","))):
        for batch in (int(b) for b in args.batches.split(",")):
            truth = phantoms(SAMPLER_TUNING_SEED, batch, size)
            meas = task.measure(truth, torch.Generator().manual_seed(0))
            x = torch.randn(batch, *prior.shape, generator=torch.Generator().manual_seed(1))
            sigmas = torch.logspace(1, -2, args.steps).tolist()
            ratios: dict[str, list[float]] = {n: [] for n in names}
            floors = []
            for name in names:  # warm-up (first-call allocations, SVD caches are not kept between calls)
                SAMPLERS[name](meas, prior, task, 2, torch.Generator().manual_seed(0))
            for r in range(args.rounds):
                t0 = time.perf_counter()
                bare_forward(prior, x, sigmas)
                floor = time.perf_counter() - t0
                floors.append(floor)
                for name in names:
                    t0 = time.perf_counter()
                    SAMPLERS[name](meas, prior, task, args.steps, torch.Generator().manual_seed(r))
                    ratios[name].append((time.perf_counter() - t0) / floor)
            for name in names:
                vals = ratios[name]
                rows.append(f"| {task.name} | {batch} | {name} | {statistics.median(vals):.3f} | "
                            f"{min(vals):.3f}-{max(vals):.3f} | {1000 * statistics.median(floors) / args.steps:.1f} |")
                print(rows[-1], flush=True)
    text = "\n".join([
        "# Sampler time / bare network time (default prior, 64x64, CPU)",
        "",
        f"{args.steps} steps, {args.rounds} paired rounds; ratio = sampler wall time / ({args.steps} bare denoiser "
        "forwards at the same batch, no grad), median and range over rounds. Whole-call times: they include "
        "each sampler's set-up (RED-Diff's pseudo-inverse initialisation by CG, DDRM's SVD of the operator).",
        "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/benchmarks/sampler_speed.py "
        f"--steps {args.steps} --rounds {args.rounds} --out experiments/results/sampler_speed.md`",
        "",
        "| task | batch | sampler | time / network time (median) | range | ms per bare forward |",
        "|---|---:|---|---:|---|---:|",
        *rows,
    ]) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
