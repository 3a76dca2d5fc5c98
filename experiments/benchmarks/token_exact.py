"""Token samplers against an enumerable posterior: APS, its ablations, unguided decoding and best-of-N.

    OMP_NUM_THREADS=1 python experiments/benchmarks/token_exact.py --out experiments/results/token_exact.md

Each problem: a random tabular prior over ``K ** L`` code sequences (``rand ** 4``, so a few sequences carry most
mass) with exact masked conditionals (:meth:`MaskedTokenPrior.tabular`), a random codebook in ``R^C``, a random
linear decoder to ``R^{d_x}``, a Gaussian ``A`` to ``R^{d_y}``, and ``y`` from a truth drawn from the prior; the
posterior over all sequences is enumerated (:func:`exact_token_posterior`). Every sampler draws ``--samples``
sequences (one decoding each, ``L`` steps of one token) and is scored by the total variation between their histogram
and the exact posterior; the floor is ``--samples`` exact draws. Best-of-N's N is set so that its wall time matches
APS's (measured on the first problem). Mean +- 1.96 sd / sqrt(problems); lower is better.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from invsolve import GaussianNoise, Measurement
from invsolve.metrics import provenance, publish
from invsolve.operators.matrix import MatrixOperator
from invsolve.priors.tokens import MaskedTokenPrior, all_sequences, exact_token_posterior, sequence_index
from invsolve.samplers import aps, best_of_n

K, L, C, DX = 4, 5, 2, 10

APS_VARIANTS = {
    "unguided decoding (APS with 0 inner steps)": {"inner_steps": 0},
    "APS (as published: NLL only)": {},
    "  ablation: prior-confidence remasking (no anchoring)": {"anchor": "prior"},
    "  ablation: soft expectation (no quantization)": {"expectation": "soft"},
    "APS + KL to the prior's logits (kl 1)": {"kl": 1.0},
    "APS + KL, soft expectation": {"kl": 1.0, "expectation": "soft"},
}


def make_problem(seed: int, d_y: int, sigma: float):
    g = torch.Generator().manual_seed(seed)
    table = torch.rand((K,) * L, generator=g, dtype=torch.float64) ** 4
    codebook = torch.randn(K, C, generator=g, dtype=torch.float64)
    weight = torch.randn(DX, L * C, generator=g, dtype=torch.float64) / 2
    prior = MaskedTokenPrior.tabular(table, codebook, weight, torch.zeros(DX, dtype=torch.float64), (DX,))
    op = MatrixOperator(torch.randn(d_y, DX, generator=g, dtype=torch.float64) / DX**0.5)
    truth = prior.decode_tokens(prior.states[torch.multinomial(prior.joint, 1, generator=g)])
    noise = GaussianNoise(sigma)
    return Measurement(op, noise, noise.sample(op.A(truth), g)), prior


def tv_of_codes(codes: torch.Tensor, post: torch.Tensor) -> float:
    counts = torch.bincount(sequence_index(codes, K), minlength=post.numel()).to(post.dtype)
    return 0.5 * float((counts / counts.sum() - post).abs().sum())


def codes_of_images(images: torch.Tensor, prior: MaskedTokenPrior) -> torch.Tensor:
    """The sequences whose decodings are ``images`` (nearest; exact for best-of-N's decoded codes)."""
    every = prior.decode_tokens(prior.states).reshape(len(prior.states), -1)
    return prior.states[torch.cdist(images.reshape(len(images), -1), every).argmin(dim=1)]


def cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {half:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--settings", default="3:0.3,6:0.1", help="comma-separated d_y:sigma_y columns")
    parser.add_argument("--inner-steps", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    columns = [(int(a), float(b)) for a, b in (c.split(":") for c in args.settings.split(","))]
    rows: dict[str, dict[tuple, list[float]]] = {}
    seconds: dict[str, float] = {}
    n_best = None
    for column in columns:
        for p in range(args.problems):
            measurement, prior = make_problem(1000 * column[0] + p, *column)
            post = exact_token_posterior(measurement, prior)[0]
            draws = torch.multinomial(post, args.samples, replacement=True, generator=torch.Generator().manual_seed(p))
            rows.setdefault("*floor (exact draws)*", {}).setdefault(column, []).append(
                tv_of_codes(all_sequences(K, L)[draws], post))
            for name, settings in APS_VARIANTS.items():
                start = time.perf_counter()
                out = aps(measurement, prior, steps=L, n_samples=args.samples,
                          generator=torch.Generator().manual_seed(p), **{"inner_steps": args.inner_steps, **settings})
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                rows.setdefault(name, {}).setdefault(column, []).append(tv_of_codes(out.diagnostics["tokens"], post))
            if n_best is None:
                unguided = seconds[next(iter(APS_VARIANTS))]
                n_best = max(1, round(seconds["APS (as published: NLL only)"] / unguided))
            for n in sorted({4, n_best}):
                name = f"best-of-{n}" + (" (APS's wall time)" if n == n_best else "")
                start = time.perf_counter()
                out = best_of_n(measurement, prior, steps=L, n_samples=args.samples, candidates=n, chunk=16 * args.samples,
                                generator=torch.Generator().manual_seed(p))
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                rows.setdefault(name, {}).setdefault(column, []).append(
                    tv_of_codes(codes_of_images(out.samples[:, 0], prior), post))
            print(f"problem {p} of column {column} done", flush=True)
    head = " | ".join(f"d_y={d}, sigma_y={s:g}" for d, s in columns)
    runs = args.problems * len(columns)
    lines = ["# Token samplers against the exact (enumerated) posterior", "",
             f"Tabular priors over {K}^{L} = {K**L} code sequences (codebook in R^{C}, linear decoder to R^{DX}), "
             f"Gaussian A; {args.problems} random problems per column, {args.samples} draws each, one token decided "
             f"per step ({L} steps), APS with {args.inner_steps} inner Adam steps (lr 0.5). Total variation to the "
             "exact posterior, mean ± 1.96 sd/sqrt(n); lower is better. float64.", "",
             f"| sampler | {head} | s / problem |", "|---|" + "---:|" * len(columns) + "---:|"]
    for name, by_column in rows.items():
        time_cell = f"{seconds[name] / runs:.2f}" if name in seconds else "–"
        lines.append(f"| {name} | " + " | ".join(cell(by_column[c]) for c in columns) + f" | {time_cell} |")
    lines += ["", provenance("experiments/benchmarks/token_exact.py", sys.argv[1:]), ""]
    text = "\n".join(lines)
    return publish(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
