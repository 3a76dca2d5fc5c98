"""Latent samplers on held-out brains: STSL at its paper's budget against latent DPS and PSLD at 4x its NFE, and
against pixel-space DPS and RED-Diff with the brain prior, with the autoencoder's own ceiling beside them.

    OMP_NUM_THREADS=2 python experiments/latent_brain.py --out experiments/results/latent_brain.md

(the shipped latent prior ``latent_brain``; ``--prior PRIOR.pt --autoencoder DIR`` for another).

Held-out images: the first ``--images`` slices of ``BrainSlices(split="heldout", seed=0)`` (the quality bar's), 1%
noise, the tasks of ``--tasks``. Each method gives one sample per image (RED-Diff its mean), clipped to [0, 1];
PSNR and SSIM (data range 1) mean +- 95% t-interval; NFE = denoiser calls; wall time per image on this machine.
Ceiling: PSNR of ``decode(encode(x))``, the best any latent method can reach. Settings: the tuned table's under the
prior ``latent_brain`` (``--zeta``, ``--lr``, ``--sigma-start`` override them).
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
from invsolve.priors.latent import load_latent_prior
from invsolve.samplers import dps, latent_dps, psld, red_diff, stsl
from invsolve.tasks import EVALUATION_SEED, standard_tasks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", help="a latent prior file (default: the shipped latent_brain)")
    parser.add_argument("--autoencoder", help="its autoencoder folder (with --prior)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tasks", default="CT 8 views,MRI 8x,Inpainting 50%,SR 4x")
    parser.add_argument("--zeta", type=float, help="latent DPS / PSLD step (default: tuned)")
    parser.add_argument("--lr", type=float, help="STSL inner step (default: tuned)")
    parser.add_argument("--sigma-start", type=float, help="STSL's first noise level (default: tuned)")
    parser.add_argument("--only", help="run only the methods whose label starts with this (e.g. STSL)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    latent = (load_latent_prior(args.prior, args.autoencoder) if args.prior else load_shipped_prior("latent_brain"))
    pixel = load_shipped_prior("brain")
    stream = BrainSlices(64, split="heldout", seed=0)
    truth = torch.stack([stream[i] for i in range(args.images)])
    with torch.no_grad():
        ceiling = [psnr(truth[i, 0], latent.decode(latent.encode(truth[i:i + 1]))[0, 0].clamp(0, 1))
                   for i in range(args.images)]
    stsl_nfe = 50 * (5 * 2 + 1)

    def settings(sampler: str, kind: str, steps: int, **given) -> dict:
        tuned = tuned_settings(sampler, kind, "latent_brain", steps).settings
        return {**tuned, **{k: v for k, v in given.items() if v is not None}}

    def latent_methods(kind: str) -> dict:
        st = settings("stsl", kind, 50, lr=args.lr, sigma_start=args.sigma_start)
        ld = settings("latent-dps", kind, 4 * stsl_nfe, zeta=args.zeta)
        ps = settings("psld", kind, 4 * stsl_nfe, zeta=args.zeta)
        return {
            f"STSL (50 x 5, lr {st['lr']:g}, sigma_start {st['sigma_start']:g})": lambda m, g: stsl(
                m, latent, steps=50, inner_steps=5, generator=g, **st),
            f"latent DPS ({4 * stsl_nfe} steps, zeta {ld.get('zeta', 1.0):g})": lambda m, g: latent_dps(
                m, latent, steps=4 * stsl_nfe, generator=g, **ld),
            f"PSLD ({4 * stsl_nfe} steps, zeta {ps.get('zeta', 1.0):g}, gamma {ps.get('gamma', 0.1):g})": lambda m, g: psld(
                m, latent, steps=4 * stsl_nfe, generator=g, **{"gamma": 0.1, **ps}),
        }

    rows = [f"| all | autoencoder ceiling decode(encode(x)) | – | {format_interval(ceiling)} | – | – |"]
    paired = []
    names = tuple(t.strip() for t in args.tasks.split(","))
    for task in standard_tasks(64, EVALUATION_SEED, names=names):
        meas = task.measure(truth, torch.Generator().manual_seed(EVALUATION_SEED))
        pixel_methods = {
            "pixel DPS (100 steps, brain prior)": lambda m, g: dps(m, pixel, steps=100, generator=g,
                                                                   **tuned_settings("dps", task.kind, "brain",
                                                                                    100).settings),
            "pixel RED-Diff (100 steps, brain prior)": lambda m, g: red_diff(m, pixel, steps=100, generator=g,
                                                                             **tuned_settings("red-diff", task.kind,
                                                                                              "brain", 100).settings),
        }
        per_image: dict[str, list[float]] = {}
        for label, run in {**latent_methods(task.kind), **pixel_methods}.items():
            if args.only and not label.startswith(args.only):
                continue
            t0 = time.perf_counter()
            out = run(meas, torch.Generator().manual_seed(0))
            seconds = (time.perf_counter() - t0) / args.images
            image = (out.mean if label.startswith("pixel RED") else out.samples[0]).clamp(0, 1)
            scores = [psnr(truth[i, 0], image[i, 0]) for i in range(args.images)]
            similarity = [ssim(truth[i, 0], image[i, 0], data_range=1.0) for i in range(args.images)]
            rows.append(f"| {task.name} | {label} | {out.nfe} | {format_interval(scores)} | "
                        f"{format_interval(similarity, digits=3)} | {seconds:.1f} |")
            print(rows[-1], flush=True)
            per_image[label] = scores
        stsl_scores = next((v for k, v in per_image.items() if k.startswith("STSL")), None)
        for label, scores in per_image.items():
            if stsl_scores is not None and not label.startswith("STSL"):
                diff = [a - b for a, b in zip(stsl_scores, scores)]
                paired.append(f"| {task.name} | STSL - {label} | {format_interval(diff)} |")
    text = "\n".join([
        "# Latent samplers on held-out brains", "",
        f"{args.images} held-out slices (`BrainSlices(split='heldout', seed=0)`), 1% noise; one sample per image "
        "(RED-Diff: its mean), clipped to [0, 1]; PSNR and SSIM mean +- 95% t-interval; NFE = denoiser calls.", "",
        "| task | method | NFE | PSNR (dB) | SSIM | s / image |", "|---|---|---:|---:|---:|---:|", *rows, "",
        "Paired PSNR differences (same images; positive: STSL better), mean +- 95% t-interval:", "",
        "| task | difference | PSNR (dB) |", "|---|---|---:|", *paired, "",
        provenance("experiments/latent_brain.py", sys.argv[1:]), ""])
    return publish(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
