"""RED-Diff vs DPS on the image tasks, at equal network evaluations and equal wall time.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/red_diff_vs_dps.py --out experiments/results/red_diff_vs_dps.md
    OMP_NUM_THREADS=2 .venv/bin/python experiments/red_diff_vs_dps.py --data brain \
        --out experiments/results/red_diff_vs_dps_brain.md

Per task (all seven of :mod:`invsolve.tasks`), on ``--phantoms`` held-out images measured with 1% noise, one
batch: ellipse phantoms of the evaluation stream with the default prior, or (``--data brain``) the first slices
of the held-out brain band (``BrainSlices(split="heldout", seed=0)``, the quality bar's) with the brain prior:

* RED-Diff with ``--steps`` steps (NFE = steps; settings from the tuned table, :mod:`invsolve.pipeline.tuned`);
* DPS with the same number of steps (equal NFE; ``zeta`` from the tuned table at 100 steps);
* DPS with as many steps as fit in RED-Diff's measured wall time on this batch (equal wall time),
  from DPS's measured time per step.

Each estimate is clipped to [0, 1]; PSNR / SSIM as in fastMRI; mean +- 95% t-interval over phantoms.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import time

import torch

from invsolve._atomic import write_text_atomic
from invsolve.pipeline.tuned import tuned_settings
from invsolve.metrics import format_interval, psnr, ssim
from invsolve.priors.default import load_shipped_prior
from invsolve.samplers import dps, red_diff
from invsolve.tasks import ALL_TASK_NAMES, EVALUATION_SEED, phantoms, standard_tasks

def scores(truth: torch.Tensor, est: torch.Tensor) -> tuple[list[float], list[float]]:
    est = est.clamp(0, 1)
    return ([psnr(truth[i, 0], est[i, 0]) for i in range(len(truth))],
            [ssim(truth[i, 0], est[i, 0]) for i in range(len(truth))])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out.samples[0].detach(), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(ALL_TASK_NAMES))
    parser.add_argument("--phantoms", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--data", choices=("phantoms", "brain"), default="phantoms")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    prior_name = "brain" if args.data == "brain" else "default"
    prior = load_shipped_prior(prior_name)
    size = prior.shape[-1]
    if args.data == "brain":
        from invsolve.datasets.brain import BrainSlices

        stream = BrainSlices(size, split="heldout", seed=0)
        truth = torch.stack([stream[i] for i in range(args.phantoms)])
        described = f"the first {args.phantoms} held-out brain slices (`BrainSlices(split='heldout', seed=0)`)"
    else:
        truth = phantoms(EVALUATION_SEED, args.phantoms, size)
        described = f"{args.phantoms} held-out phantoms 64x64 (`EllipsePhantoms(seed={EVALUATION_SEED})`)"
    names = tuple(n.strip() for n in args.tasks.split(","))
    rows = []
    for task in standard_tasks(size, EVALUATION_SEED, names=names):
        meas = task.measure(truth, torch.Generator().manual_seed(EVALUATION_SEED))
        rd, t_rd = timed(lambda: red_diff(meas, prior, steps=args.steps, generator=torch.Generator().manual_seed(0),
                                          **tuned_settings("red-diff", task.kind, prior_name, 100).settings))
        d1, t_d1 = timed(lambda: dps(meas, prior, steps=args.steps, generator=torch.Generator().manual_seed(0),
                                     zeta=tuned_settings("dps", task.kind, prior_name, 100).settings["zeta"]))
        eq_steps = max(2, round(args.steps * t_rd / t_d1))
        d2, t_d2 = timed(lambda: dps(meas, prior, steps=eq_steps, generator=torch.Generator().manual_seed(0),
                                     zeta=tuned_settings("dps", task.kind, prior_name, 100).settings["zeta"]))
        base_p, _ = scores(truth, task.baseline(meas.y))
        for label, est, steps, seconds in (("RED-Diff", rd, args.steps, t_rd), ("DPS, equal NFE", d1, args.steps, t_d1),
                                           ("DPS, equal wall time", d2, eq_steps, t_d2)):
            p, s = scores(truth, est)
            diff = [a - b for a, b in zip(scores(truth, rd)[0], p)] if label != "RED-Diff" else None
            rows.append(f"| {task.name} | {label} | {steps} | {format_interval(p)} | {format_interval(s, 3)} | "
                        f"{format_interval(diff) if diff else '–'} | {seconds / args.phantoms:.2f} |")
            print(rows[-1], flush=True)
        rows.append(f"| {task.name} | {task.baseline_name} (baseline) | – | {format_interval(base_p)} | | | |")
    tasks = "" if args.tasks == ",".join(ALL_TASK_NAMES) else f" --tasks {shlex.quote(args.tasks)}"
    lines = [
        f"# RED-Diff vs DPS on the {prior_name} prior",
        "",
        f"{described}, relative noise 0.01; settings from the tuned table under the prior {prior_name!r}; "
        "one estimate per image (RED-Diff's mean `mu`, one DPS sample), clipped to [0, 1]; PSNR / SSIM as in "
        "fastMRI, mean +- 95% t-interval. 'RED-Diff - row' is the paired PSNR difference. Equal wall time: DPS "
        "gets as many steps as fit in RED-Diff's measured time on the same batch.",
        "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads. Command: "
        f"`OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/red_diff_vs_dps.py "
        f"--data {args.data} --phantoms {args.phantoms} --steps {args.steps}{tasks} --out {args.out}`",
        "",
        "| task | method | steps (NFE) | PSNR (dB) | SSIM | RED-Diff - row (dB) | s / image |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
