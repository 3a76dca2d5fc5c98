"""Grid-search one hyperparameter of a sampler (or TV's weight) per standard task, on images used nowhere else.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/tune_samplers.py --sampler dps --param zeta \\
        --values 0.01,0.03,0.1 --steps 100 --tasks "CT 8 views" --phantoms 4
    OMP_NUM_THREADS=1 .venv/bin/python experiments/tune_samplers.py --data brain --sampler tv --param lam \\
        --values 0.01,0.03,0.1 --phantoms 4

Images: ``EllipsePhantoms(64, seed=SAMPLER_TUNING_SEED)`` with the default prior, or with ``--data brain`` the
tuning split of the brain stream (``BrainSlices(split="tuning")``, disjoint from the held-out band) with the brain
prior (``--prior`` overrides the prior file); score: mean PSNR of the posterior mean (``--samples`` draws) clipped
to the prior's value range, as the demo reports it. Appends a table to ``--out`` (markdown) when given.
``--fixed`` holds other hyperparameters at given values.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.metrics import psnr
from invsolve.priors.default import load_shipped_prior
from invsolve.priors.edm import EDMPrior
from invsolve.samplers import ddrm, dps, latent_dps, pigdm, psld, red_diff, stsl
from invsolve.tasks import SAMPLER_TUNING_SEED, TASK_NAMES, phantoms, standard_tasks


def _tv(meas, prior, *, steps, n_samples, generator, lam):
    from invsolve.samplers.output import SamplerOutput

    with torch.no_grad():
        image = tv_reconstruct(meas.operator, meas.y, lam, iterations=300, nonnegative=True)
    return SamplerOutput(samples=image[None], nfe=0)


SAMPLERS = {"dps": dps, "pigdm": pigdm, "ddrm": ddrm, "red_diff": red_diff, "tv": _tv,
            "latent_dps": latent_dps, "psld": psld, "stsl": stsl}


def load_prior(name_or_file: str | None, data: str):
    """A shipped prior by name (e.g. ``latent_brain``), an EDM prior file, or the shipped prior of ``data``."""
    from invsolve.priors.default import SHIPPED

    if name_or_file is None:
        return load_shipped_prior("brain" if data == "brain" else "default")
    if name_or_file in SHIPPED:
        return load_shipped_prior(name_or_file)
    return EDMPrior.from_checkpoint(name_or_file)


def tuning_images(data: str, n: int, size: int) -> torch.Tensor:
    if data == "brain":
        from invsolve.datasets.brain import BrainSlices

        stream = BrainSlices(size, split="tuning", seed=0)
        return torch.stack([stream[i] for i in range(n)])
    return phantoms(SAMPLER_TUNING_SEED, n, size)


def _value(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), required=True)
    parser.add_argument("--param", required=True)
    parser.add_argument("--values", required=True, help="comma-separated floats")
    parser.add_argument("--fixed", default="", help="other hyperparameters held fixed, e.g. lr=0.05,lam=1")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--phantoms", type=int, default=4)
    parser.add_argument("--tasks", default=",".join(TASK_NAMES), help="comma-separated task names")
    parser.add_argument("--out", default=None)
    parser.add_argument("--data", default="ellipses", choices=("ellipses", "brain"))
    parser.add_argument("--prior", default=None,
                        help="a prior file or a shipped prior's name such as latent_brain (default: the shipped "
                             "prior of --data)")
    args = parser.parse_args()
    prior = load_prior(args.prior, args.data)
    lo, hi = prior.value_range
    size = getattr(prior, "image_shape", prior.shape)[-1]
    truth = tuning_images(args.data, args.phantoms, size)
    names = tuple(n.strip() for n in args.tasks.split(","))
    fixed = {k.strip(): _value(v) for k, v in (kv.split("=") for kv in args.fixed.split(",") if kv.strip())}
    images = ("tuning brain slices (BrainSlices(split='tuning', seed=0))" if args.data == "brain"
              else f"phantoms (seed {SAMPLER_TUNING_SEED})")
    lines = [f"\n### {args.sampler}: {args.param}{' (' + args.fixed + ')' if fixed else ''}, {args.steps} steps, {args.samples} sample(s), "
             f"{args.phantoms} {images}, prior {args.prior or 'shipped'}\n",
             "`OMP_NUM_THREADS=1 python experiments/tune_samplers.py " + " ".join(map(shlex.quote, sys.argv[1:])) + "`\n",
             f"| task | {args.param} | mean PSNR (dB) | seconds |", "|---|---:|---:|---:|"]
    for task in standard_tasks(size, seed=SAMPLER_TUNING_SEED, names=names):
        meas = task.measure(truth, torch.Generator().manual_seed(SAMPLER_TUNING_SEED))
        for value in (float(v) for v in args.values.split(",")):
            start = time.perf_counter()
            out = SAMPLERS[args.sampler](meas, prior, steps=args.steps, n_samples=args.samples,
                                         generator=torch.Generator().manual_seed(0), **fixed, **{args.param: value})
            mean = out.samples.mean(dim=0).clamp(lo, hi)
            score = sum(psnr(truth[i, 0], mean[i, 0]) for i in range(len(truth))) / len(truth)
            lines.append(f"| {task.name} | {value:g} | {score:.2f} | {time.perf_counter() - start:.0f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        path = Path(args.out)
        write_text_atomic(path, (path.read_text() if path.exists() else "") + text)


if __name__ == "__main__":
    main()
