"""Full-size 3D reconstruction: time per step and peak memory of the DDS fast path at 128^3 and 256^3.

One prepared script for the GPU machine (one run of a few minutes; ``--device cuda``) and for the CPU (the
same sizes, fewer steps). Each size runs in a fresh process: the shipped ``brain_slice`` prior over the volume's
axial slices (``chunk`` slices per network call; on CUDA the network runs under ``torch.autocast`` in
bfloat16, the precision the GPU prefers, and everything else in float32), sparse-view CT with 8 views
(``ParallelBeamCT3D``) as the measurement, and ``--steps`` steps of ``dds3d`` with the settings of the brain
benchmark. Reported per size: the network and the ADMM / CG share of a step, the peak memory (CUDA: the
allocator's peak; CPU: the growth of the process's peak resident set), the operator norm's one-off cost, and
the projected time of a whole volume at the fast path's 50 steps: ``operator norm + 50 * step``.

The network at 128 and 256 pixels in-plane is the 64 x 64 prior's U-Net run at that size (a convolutional
network; its weights do not fix the size): the cost is what a prior trained at that size would cost with the
same architecture.

    python experiments/benchmarks/volume_full_size.py --device cuda --sizes 128 256 --steps 5 --out results.md
    OMP_NUM_THREADS=2 python experiments/benchmarks/volume_full_size.py --sizes 64 128 256 --steps 1 \
        --out experiments/results/volume_full_size.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from invsolve import GaussianNoise, Measurement
from invsolve.operators import ParallelBeamCT3D, sparse_view_angles
from invsolve.priors import SliceStackPrior
from invsolve.priors.default import load_shipped_prior
from invsolve.priors.edm import EDMPrior
from invsolve.samplers import dds3d
size, chunk, steps, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cuda = device.startswith("cuda")
shipped = load_shipped_prior("brain_slice").to(device)
prior2d = EDMPrior(shipped.denoiser, (1, size, size), sigma_min=shipped.sigma_min, sigma_max=shipped.sigma_max)
times = {"network": 0.0}
def sync():
    if cuda:
        torch.cuda.synchronize()
class TimedPrior(SliceStackPrior):
    def denoise(self, x, sigma):
        sync(); t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = super().denoise(x, sigma).float()
        sync(); times["network"] += time.perf_counter() - t
        return out
prior = TimedPrior(prior2d, size, chunk=chunk)
op = ParallelBeamCT3D(sparse_view_angles(8), (size, size, size), device=device)
g = torch.Generator(device=device).manual_seed(0)
volume = torch.rand((1, 1, size, size, size), generator=g, device=device)
with torch.no_grad():
    y = op.A(volume)
meas = Measurement(op, GaussianNoise(0.01 * float(y.square().mean().sqrt())), y)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss()
if cuda:
    torch.cuda.reset_peak_memory_stats()
sync(); start = time.perf_counter()
norm = op.operator_norm(generator=torch.Generator(device=device).manual_seed(0))
sync(); norm_s = time.perf_counter() - start
start = time.perf_counter()
with torch.no_grad():
    dds3d(meas, prior, steps=steps, generator=g, operator_norm=norm, lam=3e-4, lam_xy=2e-4, admm_iterations=4)
sync(); total = time.perf_counter() - start
peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss() - before
print(json.dumps({"size": size, "chunk": chunk, "steps": steps, "device": device,
                  "gpu": torch.cuda.get_device_name() if cuda else None,
                  "network_s_per_step": times["network"] / steps,
                  "admm_s_per_step": (total - times["network"]) / steps, "operator_norm_s": norm_s,
                  "peak_mib": peak, "volume_mib": size**3 * 4 / 2**20}))
"""


def measure(size: int, chunk: int, steps: int, device: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(size), str(chunk), str(steps), device],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"size": size, "chunk": chunk, "steps": steps, "device": device, "error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], fast_steps: int) -> list[str]:
    lines = ["| size | chunk | steps timed | network s / step | ADMM + CG s / step | operator norm s (once) | "
             f"peak memory MiB | volume MiB | projected whole volume at {fast_steps} steps |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']}^3 | {r['chunk']} | failed: {r['error'].strip().splitlines()[-1]} |||||||")
            continue
        step = r["network_s_per_step"] + r["admm_s_per_step"]
        projected = r["operator_norm_s"] + fast_steps * step
        lines.append(f"| {r['size']}^3 | {r['chunk']} | {r['steps']} | {r['network_s_per_step']:.2f} | "
                     f"{r['admm_s_per_step']:.2f} | {r['operator_norm_s']:.1f} | {r['peak_mib']:.0f} | "
                     f"{r['volume_mib']:.0f} | {projected / 60:.1f} min |")
    return lines


def main(argv: list[str] | None = None) -> None:
    import torch

    from invsolve._atomic import write_text_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--chunk", type=int, help="slices per network call (default: 64 on CUDA, 16 on CPU)")
    parser.add_argument("--steps", type=int, default=2, help="DDS steps timed per size")
    parser.add_argument("--fast-steps", type=int, default=50, help="the step count of the projection")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="markdown file for the table")
    args = parser.parse_args(argv)
    chunk = args.chunk or (64 if args.device.startswith("cuda") else 16)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, chunk, args.steps, args.device))
        print(json.dumps(rows[-1]), flush=True)
    where = rows[0].get("gpu") or f"CPU, {torch.get_num_threads()} threads"
    text = "\n".join([f"Command: `python experiments/benchmarks/volume_full_size.py {' '.join(sys.argv[1:])}` "
                      f"({where}). DDS (`dds3d`, TV-z + in-plane TV, 4 ADMM iterations of 5 CG each per step), "
                      "sparse-view CT 8 views, the `brain_slice` prior's network; network in bfloat16 on CUDA.", "",
                      *table(rows, args.fast_steps), ""])
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
