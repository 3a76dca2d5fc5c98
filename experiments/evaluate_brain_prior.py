"""Measure a brain prior: denoising PSNR on the two held-out brain sets against tuned TV and the ellipse prior,
and a figure of unconditional samples beside held-out slices.

Held-out sets (never used for training or tuning, :mod:`invsolve.datasets.brain`):

- (a) the MNI152 band ``z >= 125`` (axial slices, deformed and re-contrasted), ``BrainSlices(split="heldout")``;
- (b) real subjects of other contrasts: nibabel's EPI ``example4d.nii.gz`` (first frame) and T1 ``anatomical.nii``,
  the 49 axial slices of :func:`invsolve.datasets.brain.subject_slices` (at least 15% of the square above 0.1 after
  the percentile window), resized to the prior's grid.

Denoising: ``y = x + sigma n`` (seeded), PSNR (data range 1) of ``D(y, sigma)`` per image, mean and standard
deviation. TV: ``deepinv.models.TVDenoiser`` with its weight tuned per sigma on the tuning split. The shipped
ellipse prior is a second baseline: what a prior of the wrong anatomy does.

    OMP_NUM_THREADS=2 python experiments/evaluate_brain_prior.py --prior runs/brain_prior/prior.pt
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evaluate_prior import samples_figure, tv_denoise_tuned
from invsolve._atomic import write_text_atomic
from invsolve.datasets.brain import BrainSlices, BrainTemplates, subject_slices
from invsolve.metrics import psnr
from invsolve.priors.default import load_shipped_prior
from invsolve.priors.edm import EDMPrior

RESULTS = Path(__file__).resolve().parent / "results"


def denoise_all(prior: EDMPrior, y: torch.Tensor, sigma: float) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([prior.denoise(y[i:i + 32], sigma) for i in range(0, len(y), 32)])


def table(sets: dict[str, torch.Tensor], priors: dict[str, EDMPrior], tune: torch.Tensor, sigmas, seed: int):
    rows = []
    for k, sigma in enumerate(sigmas):
        tv, weight = tv_denoise_tuned(tune, sigma, torch.Generator().manual_seed(10_000 + k),
                                      (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0))
        for name, x in sets.items():
            y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + k))
            scores = {"noisy input": y, f"TV (tuned, weight {weight:.3g})": tv(y)}
            scores.update({label: denoise_all(p, y, sigma) for label, p in priors.items()})
            rows.append({"set": name, "sigma": sigma, "n": len(x),
                         **{m: [psnr(a[0].numpy(), b[0].numpy(), data_range=1.0) for a, b in zip(x, est)]
                            for m, est in scores.items()}})
    return rows


def markdown(rows, args, seconds: float, sample_seconds: float) -> str:
    methods = [m for m in rows[0] if m not in ("set", "sigma", "n")]
    head = ["| held-out set | sigma | n | noisy | TV (tuned) | " + " | ".join(methods[2:]) + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * (len(methods) - 2)]
    body = []
    for r in rows:
        tv = next(m for m in r if m.startswith("TV"))
        cells = [f"{np.mean(r[m]):.2f} ± {np.std(r[m]):.2f}" for m in ["noisy input", tv, *methods[2:]]]
        body.append(f"| {r['set']} | {r['sigma']:g} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join([
        "# Brain prior: denoising on held-out brains and samples", "",
        f"Prior: `{args.prior or 'invsolve/weights/brain_prior.pt (shipped)'}`. Held-out (a): {args.n_images} slices of "
        "`BrainSlices(split='heldout', seed=0)` (the MNI152 band z >= 125, never in training). Held-out (b): axial "
        "slices of nibabel's real EPI (`example4d.nii.gz`, first frame) and T1 (`anatomical.nii`) (`subject_slices`: "
        "at least 15% of the square above 0.1), percentile-windowed and resized to 64x64. TV weights tuned per sigma on "
        f"{args.n_tune} slices of the tuning split. PSNR (dB, data range 1), mean ± std over images; noise seeds "
        f"{args.noise_seed}+k.", "", *head, *body, "",
        "## Unconditional samples", "", f"![samples]({args.out_png.name})", "",
        f"`{args.out_png.name}`: left {args.n_samples} samples of the prior (Heun, {args.sample_steps} steps, seed "
        f"{args.sample_seed}; {sample_seconds:.0f} s), right held-out (a) slices.", "",
        "## Reproduce", "", "```",
        " ".join(["OMP_NUM_THREADS=2 python experiments/evaluate_brain_prior.py", *map(shlex.quote, args.argv)]),
        "```", "",
        f"Evaluation took {seconds:.0f} s on {platform.machine()} CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s).", ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", help="prior file (default: the shipped brain prior)")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--n-tune", type=int, default=16)
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--sample-steps", type=int, default=40)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--out-md", type=Path, default=RESULTS / "brain_prior.md")
    parser.add_argument("--out-png", type=Path, default=RESULTS / "brain_prior_samples.png")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    prior = EDMPrior.from_checkpoint(args.prior) if args.prior else load_shipped_prior("brain")
    size = prior.shape[-1]
    templates = BrainTemplates()
    heldout = BrainSlices(size, split="heldout", seed=0, templates=templates)
    tuning = BrainSlices(size, split="tuning", seed=0, templates=templates)
    sets = {"(a) MNI152 band": torch.stack([heldout[i] for i in range(args.n_images)]),
            "(b) real subjects": subject_slices(size)}
    tune = torch.stack([tuning[i] for i in range(args.n_tune)])
    priors = {"brain prior": prior, "ellipse prior (default)": load_shipped_prior("default")}
    rows = table(sets, priors, tune, args.sigmas, args.noise_seed)
    args.out_png.parent.mkdir(parents=True, exist_ok=True)
    sample_seconds = samples_figure(prior, sets["(a) MNI152 band"], args.n_samples, args.sample_steps,
                                    args.sample_seed, args.out_png, "held-out brain slices (a)")
    text = markdown(rows, args, time.perf_counter() - start, sample_seconds)
    write_text_atomic(args.out_md, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
