"""Choose the TV weight of every standard task on random-ellipse phantoms used nowhere else.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/tune_tv_demo.py --out experiments/results/tv_tuning.md

Phantoms: ``EllipsePhantoms(64, seed=TV_TUNING_SEED)`` (the prior trained on seed 0; the quality
bar evaluates on ``EVALUATION_SEED``). The best weight per task goes into ``invsolve.tasks.TV_WEIGHTS``.
"""

from __future__ import annotations

import argparse

import torch

from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.metrics import psnr
from invsolve.tasks import ALL_TASK_NAMES, NOISE_LEVEL, TV_TUNING_SEED, phantoms, standard_tasks

GRID = {
    "CT": [0.05, 0.1, 0.2, 0.5, 1.0],
    "MRI": [0.002, 0.005, 0.01, 0.02, 0.05],
    "Inpainting": [0.005, 0.01, 0.02, 0.05, 0.1],
    "Gaussian": [0.001, 0.002, 0.005, 0.01, 0.02],
    "SR": [0.001, 0.002, 0.005, 0.01, 0.02],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--phantoms", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    truth = phantoms(TV_TUNING_SEED, args.phantoms, args.size)
    rows, best = [], {}
    for task in standard_tasks(args.size, seed=TV_TUNING_SEED, names=ALL_TASK_NAMES):
        meas = task.measure(truth, torch.Generator().manual_seed(TV_TUNING_SEED))
        for lam in GRID[task.name.split()[0]]:
            x = tv_reconstruct(task.operator, meas.y, lam, iterations=args.iterations, nonnegative=True)
            score = sum(psnr(truth[i, 0], x[i, 0]) for i in range(len(truth))) / len(truth)
            rows.append(f"| {task.name} | {lam:g} | {score:.2f} |")
            if score > best.get(task.name, (None, -1e9))[1]:
                best[task.name] = (lam, score)
    lines = [
        "# TV weight selection for the standard tasks",
        "",
        f"{args.phantoms} random-ellipse phantoms {args.size}x{args.size} (stream seed {TV_TUNING_SEED}), "
        f"relative noise {NOISE_LEVEL}, {args.iterations} PDHG iterations, non-negativity on. Mean PSNR (dB).",
        "",
        f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/tune_tv_demo.py "
        "--out experiments/results/tv_tuning.md`",
        "",
        "| task | lambda | mean PSNR |",
        "|---|---:|---:|",
        *rows,
        "",
        "Best per task (used as `invsolve.tasks.TV_WEIGHTS`):",
        "",
        *[f"- {name}: lambda = {lam:g} ({m:.2f} dB)" for name, (lam, m) in best.items()],
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
