"""What a CPU run costs at 256x256: sampler time / bare network time, and which costs grow faster than the pixels.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/sampler_speed_256.py \\
        --out experiments/results/sampler_speed_256.md

Part 1, the ratios of ``sampler_speed.md`` at 256x256 with the operators users run at that size (CT 180 and 60
views, multi-coil MRI 4x with 8 coils, 50% inpainting) and a network of realistic size (the randomly initialised
21.6 M parameter ADM UNet of ``bench_common.WIDE_256``; timing only): per round, ``steps`` bare no-grad forwards
(the floor), then each sampler for ``steps`` steps; ratio = sampler / floor per round, median over rounds.
Samplers and settings as in ``sampler_speed.py``.

Part 2, scaling: every operator's ``A`` + ``A^T`` and one DDRM set-up (the SVD) at 64x64 and 256x256, and the
network's forward; the growth factor over the 16x more pixels is reported and flagged when it exceeds 16 (cost
growing faster than the pixels).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from types import SimpleNamespace

import torch

import invsolve  # noqa: F401  (applies the torchvision guard before deepinv is imported)
from bench_common import parameter_count, wide_prior
from invsolve._atomic import write_text_atomic
from invsolve.operators.spectral import spectral_decomposition
from invsolve.pipeline.catalogue import image_setup, parse_operator_spec
from sampler_speed import SAMPLERS, bare_forward

TASKS = {"CT 180 views": "ct:views=180", "CT 60 views": "ct:views=60", "MRI 4x, 8 coils": "mri:acceleration=4,coils=8",
         "Inpainting 50%": "inpainting:fraction=0.5"}


def setup_for(name: str, size: int):
    return image_setup(parse_operator_spec(TASKS[name]), size, 0)


def measurement_for(setup, size: int):
    truth = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    return setup.measure(truth, torch.Generator().manual_seed(1))


def sampler_ratios(args) -> list[str]:
    prior = wide_prior(256)
    rows = []
    for name in TASKS:
        setup = setup_for(name, 256)
        m = measurement_for(setup, 256)
        task = SimpleNamespace(kind=setup.kind)
        x = torch.randn(1, *prior.shape, generator=torch.Generator().manual_seed(1))
        sigmas = torch.logspace(1, -2, args.steps).tolist()
        ratios: dict[str, list[float]] = {}
        floors = []
        failures: dict[str, str] = {}
        for sampler in SAMPLERS:  # warm-up, and find out what cannot run at this size
            try:
                SAMPLERS[sampler](m, prior, task, 2, torch.Generator().manual_seed(0))
            except (ValueError, RuntimeError, MemoryError) as err:
                failures[sampler] = str(err).split(";")[0][:110]
        for r in range(args.rounds):
            start = time.perf_counter()
            bare_forward(prior, x, sigmas)
            floor = time.perf_counter() - start
            floors.append(floor)
            for sampler in SAMPLERS:
                if sampler in failures:
                    continue
                start = time.perf_counter()
                SAMPLERS[sampler](m, prior, task, args.steps, torch.Generator().manual_seed(r))
                ratios.setdefault(sampler, []).append((time.perf_counter() - start) / floor)
        ms = 1000 * statistics.median(floors) / args.steps
        for sampler in SAMPLERS:
            if sampler in failures:
                rows.append(f"| {name} | {sampler} | not run: {failures[sampler]} | | {ms:.0f} |")
            else:
                vals = ratios[sampler]
                rows.append(f"| {name} | {sampler} | {statistics.median(vals):.2f} | {min(vals):.2f}-{max(vals):.2f} | "
                            f"{ms:.0f} |")
            print(rows[-1], flush=True)
    return rows


def _seconds(fn, min_total: float = 0.3) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if time.perf_counter() - start > min_total:
            return (time.perf_counter() - start) / n


def scaling_rows() -> list[str]:
    rows = []
    for name in TASKS:
        times = {}
        svd = {}
        for size in (64, 256):
            op = setup_for(name, size).operator
            x = torch.randn(1, *op.x_shape)
            y = torch.randn(1, *op.y_shape)
            with torch.no_grad():
                times[size] = _seconds(lambda: op.A_adjoint(op.A(x) + 0 * y))
            start = time.perf_counter()
            try:
                spectral_decomposition(op)
                svd[size] = f"{time.perf_counter() - start:.2f} s"
            except (ValueError, RuntimeError, MemoryError) as err:
                svd[size] = "no SVD: " + str(err).split(":")[0][:60]
        growth = times[256] / times[64]
        flag = " **faster than pixels**" if growth > 16 * 1.25 else ""
        rows.append(f"| {name} | A + A^T | {1000 * times[64]:.2f} ms | {1000 * times[256]:.2f} ms | {growth:.1f}{flag} |")
        rows.append(f"| {name} | DDRM set-up (SVD) | {svd[64]} | {svd[256]} | |")
        print(rows[-2], rows[-1], sep="\n", flush=True)
    net = {}
    for size in (64, 256):
        prior = wide_prior(size)
        x = torch.randn(1, *prior.shape)
        with torch.no_grad():
            net[size] = _seconds(lambda: prior.denoise(x, 1.0), 2.0)
    rows.append(f"| network ({parameter_count(prior) / 1e6:.1f} M) | forward | {1000 * net[64]:.1f} ms | "
                f"{1000 * net[256]:.1f} ms | {net[256] / net[64]:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    scaling = scaling_rows()
    ratios = sampler_ratios(args)
    command = (f"OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python "
               f"experiments/benchmarks/sampler_speed_256.py {' '.join(sys.argv[1:])}")
    text = "\n".join([
        "# What a CPU run costs at 256x256", "",
        f"Command: `{command}`", "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU.", "",
        "## Sampler time / bare network time (batch 1)", "",
        f"{args.steps} steps, {args.rounds} paired rounds; ratio = sampler wall time / ({args.steps} bare no-grad "
        "forwards of the 21.6 M parameter network), whole calls (set-up included), median and range over rounds.", "",
        "| task | sampler | time / network time (median) | range | ms per bare forward |",
        "|---|---|---:|---|---:|", *ratios, "",
        "## Cost growth from 64x64 to 256x256 (16x the pixels)", "",
        "Growth = time at 256 / time at 64; linear in the pixels is 16 (FFT-based: 16 x log(65536)/log(4096) = 21); "
        "flagged above 20.", "",
        "| operator | cost | 64x64 | 256x256 | growth |", "|---|---|---:|---:|---:|", *scaling,
    ]) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
