"""Operator overhead benchmark: our wrappers vs the bare deepinv physics they wrap, side by side.

For every operator that ``invsolve.operators`` exports over a deepinv physics, time
``A`` and ``A_adjoint`` at 256x256 (batch 1 and 8) for our wrapper and for the bare
deepinv call on the same input, interleaved in one run, and report the ratio of
medians (target <= 1.10: the interface adds no cost).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/operators.py \
        --out experiments/results/operators.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

import invsolve  # noqa: F401  (applies the torchvision guard before deepinv is imported)
from invsolve._atomic import write_text_atomic
from invsolve import operators as ops

SIZE = 256


def _image_cases(size: int) -> dict[str, Callable[[], ops.LinearOperator]]:
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return {
        "Inpainting (random 50%)": lambda: ops.Inpainting.random((1, size, size), 0.5, g()),
        "SuperResolution x4 (bicubic)": lambda: ops.SuperResolution((1, size, size), 4, filter="bicubic"),
        "Blur Gaussian (FFT)": lambda: ops.Blur.gaussian((1, size, size), 2.0, method="fft"),
        "Blur Gaussian (spatial)": lambda: ops.Blur.gaussian((1, size, size), 2.0, method="spatial"),
        "Blur motion (FFT)": lambda: ops.Blur.motion((1, size, size), 15, g(), method="fft"),
    }


def _mri_cases(size: int) -> dict[str, Callable[[], ops.LinearOperator]]:
    mask = ops.fastmri_mask((size, size), 4, center_fraction=0.08, kind="equispaced", seed=0)
    maps = ops.synthetic_coil_maps(8, (size, size))
    return {
        "SingleCoilMRI 2D 4x": lambda: ops.SingleCoilMRI(mask, (size, size)),
        "MultiCoilMRI 2D 4x, 8 coils": lambda: ops.MultiCoilMRI(mask, maps),
    }


def _ct_cases(size: int) -> dict[str, Callable[[], ops.LinearOperator]]:
    return {
        "ParallelBeamCT 8 views": lambda: ops.ParallelBeamCT(ops.sparse_view_angles(8), size),
        "ParallelBeamCT 180 views": lambda: ops.ParallelBeamCT(ops.sparse_view_angles(180), size),
        "FanBeamCT 8 views": lambda: ops.FanBeamCT(ops.sparse_view_angles(8), size),
    }


def _seconds_per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_pair(ours: Callable[[], object], bare: Callable[[], object], *, rounds: int,
              min_round_s: float) -> tuple[float, float, float]:
    """Per-call times of ours and bare and their ratio, from interleaved rounds (alternating which goes first).

    Each round runs enough calls to last about ``min_round_s``. Returns the minimum
    per-call time of each side (as :mod:`timeit` does: load only ever adds time) and
    the median over rounds of the paired ratio ours/bare, which cancels slow drifts
    of the machine's speed between rounds.
    """
    ours(), bare()  # warm-up (caches, FFT plans)
    number = max(1, int(min_round_s / max(_seconds_per_call(bare, 1), 1e-7)))
    ours_t, bare_t = [], []
    for r in range(rounds):
        order = [(ours, ours_t), (bare, bare_t)] if r % 2 == 0 else [(bare, bare_t), (ours, ours_t)]
        for fn, acc in order:
            acc.append(_seconds_per_call(fn, number))
    paired = statistics.median(o / b for o, b in zip(ours_t, bare_t))
    return min(ours_t), min(bare_t), paired


def run(size: int, batches: tuple[int, ...], rounds: int, min_round_s: float) -> list[dict]:
    cases = {**_image_cases(size), **_mri_cases(size), **_ct_cases(size)}
    rows = []
    with torch.no_grad():
        for name, factory in cases.items():
            op = factory()
            physics = op.physics
            for batch in batches:
                g = torch.Generator().manual_seed(1)
                x = torch.randn((batch, *op.x_shape), generator=g)
                y = torch.randn((batch, *op.y_shape), generator=g)
                fwd = time_pair(lambda: op.A(x), lambda: physics.A(x), rounds=rounds, min_round_s=min_round_s)
                adj = time_pair(lambda: op.A_adjoint(y), lambda: physics.A_adjoint(y), rounds=rounds, min_round_s=min_round_s)
                rows.append({"operator": name, "batch": batch, "A": fwd, "A_adjoint": adj})
    return rows


def to_markdown(rows: list[dict], command: str, threads: int) -> str:
    lines = [
        "# Operator overhead: invsolve wrapper vs bare deepinv physics",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} threads, CPU. "
        "Per-call times in milliseconds: the minimum over interleaved rounds (ours and bare alternate, "
        "each round lasting at least the given time). Ratio = median over rounds of the paired ratio "
        "ours / bare (target <= 1.10). Every wrapper calls the same deepinv code as bare, so a ratio "
        "is 1 plus a fixed cost of about 1 microsecond per call (shape/dtype check, two Python calls) "
        "plus noise; only calls lasting ~10 microseconds show that fixed cost. CT adjoints are faster "
        "than deepinv's because ours is the exact transposed interpolation, not autograd.",
        "",
        "| operator | batch | A ours (ms) | A bare (ms) | A ratio | A^T ours (ms) | A^T bare (ms) | A^T ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for r in rows:
        (fo, fb, fr), (ao, ab, ar) = r["A"], r["A_adjoint"]
        worst = max(worst, fr, ar)
        lines.append(
            f"| {r['operator']} | {r['batch']} | {fo * 1e3:.3f} | {fb * 1e3:.3f} | {fr:.3f} | "
            f"{ao * 1e3:.3f} | {ab * 1e3:.3f} | {ar:.3f} |"
        )
    lines += ["", f"Worst ratio: {worst:.3f}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-round-s", type=float, default=0.05, help="minimum duration of one timing round")
    parser.add_argument("--out", default=None, help="write the markdown table here (atomically)")
    args = parser.parse_args()
    rows = run(args.size, tuple(args.batches), args.rounds, args.min_round_s)
    import sys

    command = "OMP_NUM_THREADS=%d .venv/bin/python experiments/benchmarks/operators.py %s" % (
        torch.get_num_threads(), " ".join(sys.argv[1:]))
    text = to_markdown(rows, command, torch.get_num_threads())
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
