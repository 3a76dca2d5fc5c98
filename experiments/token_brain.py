"""APS on held-out brains: against unguided decoding, best-of-N at APS's wall time, its two ablations, and pixel-space
DPS and RED-Diff with the brain prior, with the tokenizer's own ceiling beside them.

    OMP_NUM_THREADS=2 python experiments/token_brain.py --out experiments/results/token_brain.md

(the shipped token prior ``token_brain``; ``--prior DIR/token_prior --tokenizer DIR`` for another).

Held-out images: the first ``--images`` slices of ``BrainSlices(split="heldout", seed=0)`` (the quality bar's), 1%
noise, the tasks of ``--tasks``. Each method gives one sample per image (RED-Diff its mean), clipped to [0, 1]; PSNR
and SSIM mean +- 95% t-interval; transformer calls (NFE for the pixel methods), decoder calls, wall time per image.
Best-of-N's N is APS's wall time over unguided decoding's on the same task (equal wall time). Ceiling: PSNR of
``decode(tokenize(x))``, the best any token method can reach. Settings: the tuned table's under the prior
``token_brain`` (``--inner-steps``, ``--lr``, ``--kl``, ``--anchor-temperature`` override them).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from invsolve.datasets.brain import BrainSlices
from invsolve.metrics import format_interval, provenance, psnr, publish, ssim
from invsolve.pipeline.tuned import tuned_settings
from invsolve.priors.default import load_shipped_prior
from invsolve.priors.tokens import load_token_prior
from invsolve.samplers import aps, best_of_n, dps, red_diff
from invsolve.tasks import EVALUATION_SEED, standard_tasks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", help="a token prior (transformer) path without suffix (default: token_brain)")
    parser.add_argument("--tokenizer", help="its tokenizer folder (with --prior)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tasks", default="CT 8 views,MRI 8x,Inpainting 50%,SR 4x")
    parser.add_argument("--steps", type=int, default=16, help="decoding steps")
    parser.add_argument("--inner-steps", type=int, help="APS inner Adam steps (default: tuned)")
    parser.add_argument("--lr", type=float, help="APS inner learning rate (default: tuned)")
    parser.add_argument("--kl", type=float, help="APS KL weight (default: tuned)")
    parser.add_argument("--anchor-temperature", type=float, help="APS ranking temperature (default: tuned)")
    parser.add_argument("--only", help="run only the methods whose label starts with this (e.g. APS)")
    parser.add_argument("--split", default="heldout", choices=("heldout", "tuning"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    tokens = load_token_prior(args.prior, args.tokenizer) if args.prior else load_shipped_prior("token_brain")
    pixel = load_shipped_prior("brain")
    stream = BrainSlices(64, split=args.split, seed=0)
    truth = torch.stack([stream[i] for i in range(args.images)])
    with torch.no_grad():
        recon = tokens.decode_tokens(tokens.tokenize(truth)).clamp(0, 1)
    ceiling = [psnr(truth[i, 0], recon[i, 0]) for i in range(args.images)]
    rows = [f"| all | tokenizer ceiling decode(tokenize(x)) | – | – | {format_interval(ceiling)} | – | – |"]
    paired = []
    names = tuple(t.strip() for t in args.tasks.split(","))
    for task in standard_tasks(64, EVALUATION_SEED, names=names):
        meas = task.measure(truth, torch.Generator().manual_seed(EVALUATION_SEED))
        given = {"inner_steps": args.inner_steps, "lr": args.lr, "kl": args.kl,
                 "anchor_temperature": args.anchor_temperature}
        settings = {**tuned_settings("aps", task.kind, "token_brain", args.steps).settings,
                    **{k: v for k, v in given.items() if v is not None}}
        seconds: dict[str, float] = {}
        per_image: dict[str, list[float]] = {}

        def run_aps(**changes):
            return lambda m, g: aps(m, tokens, steps=args.steps, generator=g, **{**settings, **changes})

        def equal_time_best_of_n(m, g):
            n = max(1, round(seconds[aps_label] / seconds[unguided_label]))
            return best_of_n(m, tokens, steps=args.steps, candidates=n, generator=g)

        shown = ", ".join(f"{k} {v:g}" for k, v in sorted(settings.items()) if isinstance(v, (int, float)))
        unguided_label, aps_label = "unguided decoding", f"APS ({args.steps} steps, {shown})"
        methods = {
            unguided_label: run_aps(inner_steps=0, anchor_temperature=1.0),  # MaskGIT: the prior's confidence
            aps_label: run_aps(),
            "APS, ablation: prior-confidence remasking": run_aps(anchor="prior"),
            "APS, ablation: soft expectation": run_aps(expectation="soft"),
            "best-of-N at APS's wall time": equal_time_best_of_n,
            "pixel DPS (100 steps, brain prior)": lambda m, g: dps(
                m, pixel, steps=100, generator=g, **tuned_settings("dps", task.kind, "brain", 100).settings),
            "pixel RED-Diff (100 steps, brain prior)": lambda m, g: red_diff(
                m, pixel, steps=100, generator=g, **tuned_settings("red-diff", task.kind, "brain", 100).settings),
        }
        for label, run in methods.items():
            if args.only and not label.startswith(args.only) and label not in (unguided_label, aps_label):
                continue
            start = time.perf_counter()
            out = run(meas, torch.Generator().manual_seed(0))
            seconds[label] = time.perf_counter() - start
            image = (out.mean if label.startswith("pixel RED") else out.samples[0]).clamp(0, 1)
            scores = [psnr(truth[i, 0], image[i, 0]) for i in range(args.images)]
            similarity = [ssim(truth[i, 0], image[i, 0], data_range=1.0) for i in range(args.images)]
            d = out.diagnostics
            name = f"best-of-{d['candidates']} (APS's wall time)" if "candidates" in d else label
            rows.append(f"| {task.name} | {name} | {d.get('transformer_calls', out.nfe)} | "
                        f"{d.get('decoder_calls', '–')} | {format_interval(scores)} | "
                        f"{format_interval(similarity, digits=3)} | {seconds[label] / args.images:.1f} |")
            print(rows[-1], flush=True)
            per_image[name] = scores
        for name, scores in per_image.items():
            if name != aps_label:
                diff = [a - b for a, b in zip(per_image[aps_label], scores)]
                paired.append(f"| {task.name} | APS - {name} | {format_interval(diff)} |")
    text = "\n".join([
        "# APS and token baselines on held-out brains", "",
        f"{args.images} {args.split} slices (`BrainSlices(split='{args.split}', seed=0)`), 1% noise; one sample per "
        "image (RED-Diff: its mean), clipped to [0, 1]; PSNR and SSIM mean +- 95% t-interval. Calls: transformer "
        "calls for token methods, denoiser calls (NFE) for pixel methods.", "",
        "| task | method | transformer calls / NFE | decoder calls | PSNR (dB) | SSIM | s / image |",
        "|---|---|---:|---:|---:|---:|---:|", *rows, "",
        "Paired PSNR differences (same images; positive: APS better), mean +- 95% t-interval:", "",
        "| task | difference | PSNR (dB) |", "|---|---|---:|", *paired, "", provenance("experiments/token_brain.py", sys.argv[1:]), ""])
    return publish(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
