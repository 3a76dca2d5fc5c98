"""Peak memory of DiffusionMBIR against the volume depth, at a fixed chunk size (CPU, peak resident set size).

Each measurement runs in a fresh process: load the default prior, build the volume, record the resident set
size, then either (a) run the slice-stacked prior's denoiser alone over the whole volume (the prior part) or
(b) run ``mbir3d`` for a few steps with sparse-view CT (prior + ADMM on the volume). Reported per depth: the
peak resident set size and its growth during the run, and the time per step split between the prior and
the ADMM iterations (everything outside the network's calls), with the sampler's default settings.

    OMP_NUM_THREADS=2 python experiments/benchmarks/mbir3d_memory.py --out experiments/results/mbir3d_memory.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from invsolve import GaussianNoise, Measurement
from invsolve.datasets import random_ellipsoids
from invsolve.operators import ParallelBeamCT3D, sparse_view_angles
from invsolve.priors import SliceStackPrior, load_default_prior
from invsolve.samplers import mbir3d
depth, chunk, part, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
prior = SliceStackPrior(load_default_prior(), depth, chunk=chunk)
volume = random_ellipsoids((depth, 64, 64), torch.Generator().manual_seed(0))[None]
op = ParallelBeamCT3D(sparse_view_angles(8), (depth, 64, 64))
with torch.no_grad():
    y = op.A(volume)
meas = Measurement(op, GaussianNoise(0.01 * float(y.square().mean().sqrt())), y)
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = kib()
times = {"prior": 0.0, "admm": 0.0}
if part == "prior":
    with torch.no_grad():
        start = time.perf_counter()
        for s in torch.linspace(5.0, 0.05, steps).tolist():
            prior.denoise(volume + s * torch.randn_like(volume), s)
        times["prior"] = (time.perf_counter() - start) / steps
else:
    class TimedPrior(SliceStackPrior):
        def denoise(self, x, sigma):
            t = time.perf_counter(); out = super().denoise(x, sigma); times["prior"] += time.perf_counter() - t
            return out
    timed_prior = TimedPrior(prior.prior2d, depth, chunk=chunk)
    start = time.perf_counter()
    norm = op.operator_norm(generator=torch.Generator().manual_seed(0))  # once per operator (50 products with A^T A); passed in below
    times["operator_norm_s"] = time.perf_counter() - start
    start = time.perf_counter()
    mbir3d(meas, timed_prior, steps=steps, generator=torch.Generator().manual_seed(0), operator_norm=norm)
    total = time.perf_counter() - start
    times["admm"] = (total - times["prior"]) / steps  # everything but the network: ADMM, DDIM update
    times["prior"] /= steps
print(json.dumps({"depth": depth, "part": part, "before_mib": before / 1024, "peak_mib": kib() / 1024,
                  "growth_mib": (kib() - before) / 1024, "seconds_per_step": times}))
"""


def measure(depth: int, chunk: int, part: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(depth), str(chunk), part, str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    import torch

    from invsolve._atomic import write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--chunk", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", help="markdown file for the table")
    args = parser.parse_args(argv)
    rows = [measure(d, args.chunk, part, args.steps) for d in args.depths for part in ("prior", "mbir3d")]
    lines = [f"Command: `python experiments/benchmarks/mbir3d_memory.py {' '.join(sys.argv[1:])}` "
             f"({torch.get_num_threads()} threads, CPU). Chunk {args.chunk} slices of 64x64; CT 8 views; "
             "peak resident set size of the whole process (MiB; it includes the interpreter, torch and the network, "
             "about the same at every depth) and the growth of that peak during the run over its value before "
             "(which already holds the peaks of building the data and the operator).", "",
             "| depth | volume (MiB) | prior alone: peak RSS | growth | mbir3d: peak RSS | growth | prior s / step | "
             "ADMM (+ DDIM update) s / step | operator norm, once (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in args.depths:
        p = next(r for r in rows if r["depth"] == d and r["part"] == "prior")
        m = next(r for r in rows if r["depth"] == d and r["part"] == "mbir3d")
        lines.append(f"| {d} | {d * 64 * 64 * 4 / 2**20:.1f} | {p['peak_mib']:.0f} | {p['growth_mib']:.0f} | "
                     f"{m['peak_mib']:.0f} | {m['growth_mib']:.0f} | "
                     f"{m['seconds_per_step']['prior']:.2f} | {m['seconds_per_step']['admm']:.2f} | "
                     f"{m['seconds_per_step']['operator_norm_s']:.2f} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
