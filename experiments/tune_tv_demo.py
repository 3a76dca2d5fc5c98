"""Choose the demo's TV weights on seeded random-ellipse phantoms (never on the Shepp-Logan test image).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/tune_tv_demo.py --out experiments/results/tv_tuning.md
"""

from __future__ import annotations

import argparse
import statistics

import torch

from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.datasets import random_ellipses
from invsolve.demo import NOISE_LEVEL, build_tasks
from invsolve.measurement import Measurement
from invsolve.metrics import psnr
from invsolve.noise import GaussianNoise

GRID = {
    "CT": [0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
    "MRI": [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    scores: dict[tuple[str, float], list[float]] = {}
    for k in range(args.phantoms):
        truth = random_ellipses(args.size, torch.Generator().manual_seed(10_000 + k))[None]
        g = torch.Generator().manual_seed(k)
        for task in build_tasks(truth, seed=k, device=torch.device("cpu")):
            clean = task.operator.A(task.truth)
            sigma_y = NOISE_LEVEL * float(clean.square().mean().sqrt())
            meas = Measurement.simulate(task.operator, GaussianNoise(sigma_y), task.truth, g)
            for lam in GRID[task.name.split()[0]]:
                x = tv_reconstruct(task.operator, meas.y, lam, iterations=args.iterations,
                                   nonnegative=task.name.startswith("CT"))
                scores.setdefault((task.name, lam), []).append(psnr(task.to_image(task.truth), task.to_image(x)))
    lines = [
        "# TV weight selection for the demo",
        "",
        f"Random-ellipse phantoms {args.size}x{args.size}, seeds 10000..{10000 + args.phantoms - 1}, "
        f"relative noise {NOISE_LEVEL}, {args.iterations} PDHG iterations. Mean PSNR (dB).",
        "",
        f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/tune_tv_demo.py --out experiments/results/tv_tuning.md`",
        "",
        "| task | lambda | mean PSNR |",
        "|---|---:|---:|",
    ]
    best = {}
    for (name, lam), vals in sorted(scores.items()):
        m = statistics.mean(vals)
        lines.append(f"| {name} | {lam:g} | {m:.2f} |")
        if m > best.get(name, (None, -1e9))[1]:
            best[name] = (lam, m)
    lines += ["", "Best per task (used as `invsolve.demo.TV_WEIGHTS`):", ""]
    lines += [f"- {name}: lambda = {lam:g} ({m:.2f} dB)" for name, (lam, m) in best.items()]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
