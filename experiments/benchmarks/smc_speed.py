"""SMC samplers' overhead over their bare network work: time / (steps x one denoiser forward on all N particles).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/smc_speed.py --out experiments/results/smc_speed.md

Default prior, 64x64, one measurement, ``N`` particles evaluated as one batch. Each round times, back to
back: ``steps`` bare forwards of the denoiser on an ``(N, 1, 64, 64)`` batch under ``torch.no_grad``
(= ``N x`` the per-particle network time), then each sampler for ``steps`` steps. The ratio is taken per
round (paired) and the median over rounds reported with its range. The issue's bar: AFES <= 1.10 at
N = 64. The operator's SVD (needed by the exact tilted kernels) is computed once before the rounds;
it is memoised on the operator, so its one-off cost is reported in its own column instead.
FKC shares AFES's machinery; TDS backpropagates through the network every step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_speed import bare_forward  # noqa: E402  (the same floor as the other samplers' table)

from invsolve._atomic import write_text_atomic
from invsolve.priors.default import load_default_prior
from invsolve.samplers import afes, fkc, tds
from invsolve.tasks import SAMPLER_TUNING_SEED, phantoms, standard_tasks

SAMPLERS = {
    "AFES": lambda m, p, n, steps, g: afes(m, p, steps=steps, n_samples=n, generator=g, data_variance=0.16),
    "FKC": lambda m, p, n, steps, g: fkc(m, p, steps=steps, n_samples=n, generator=g, data_variance=0.16),
    "TDS": lambda m, p, n, steps, g: tds(m, p, steps=steps, n_samples=n, generator=g, data_variance=0.16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="CT 8 views,MRI 4x,Inpainting 50%")
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    prior = load_default_prior()
    size = prior.shape[-1]
    names = [n.strip() for n in args.samplers.split(",")]
    n = args.particles
    rows = []
    for task in standard_tasks(size, SAMPLER_TUNING_SEED, names=tuple(t.strip() for t in args.tasks.split(","))):
        meas = task.measure(phantoms(SAMPLER_TUNING_SEED, 1, size), torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        task.operator.svd()
        svd_s = time.perf_counter() - t0
        x = torch.randn(n, *prior.shape, generator=torch.Generator().manual_seed(1))
        sigmas = torch.logspace(1, -2, args.steps).tolist()
        for name in names:  # warm-up: first-call allocations
            SAMPLERS[name](meas, prior, n, 2, torch.Generator().manual_seed(0))
        ratios: dict[str, list[float]] = {name: [] for name in names}
        floors = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            bare_forward(prior, x, sigmas)
            floor = time.perf_counter() - t0
            floors.append(floor)
            for name in names:
                t0 = time.perf_counter()
                SAMPLERS[name](meas, prior, n, args.steps, torch.Generator().manual_seed(r))
                ratios[name].append((time.perf_counter() - t0) / floor)
        for name in names:
            vals = ratios[name]
            rows.append(f"| {task.name} | {name} | {statistics.median(vals):.3f} | {min(vals):.3f}-{max(vals):.3f} | "
                        f"{1000 * statistics.median(floors) / args.steps / n:.1f} | {svd_s:.1f} |")
            print(rows[-1], flush=True)
    text = "\n".join([
        f"# SMC samplers: time / (N x per-particle network time), N = {n}, default prior, 64x64, CPU",
        "",
        f"{args.steps} steps, {args.rounds} paired rounds; ratio = sampler wall time / ({args.steps} bare denoiser "
        f"forwards on the batch of {n} particles, no grad), median and range over rounds. The operator's SVD is "
        "computed once before the rounds (memoised on the operator; its one-off time is the last column).",
        "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/benchmarks/smc_speed.py "
        f"--particles {n} --steps {args.steps} --rounds {args.rounds} --out experiments/results/smc_speed.md`",
        "",
        "| task | sampler | time / network time (median) | range | ms per particle per bare forward | SVD s (once) |",
        "|---|---|---:|---|---:|---:|",
        *rows,
    ]) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
