"""Latent sampler overhead: wall time / the bare network and decoder calls it makes, shipped ``latent_brain`` prior.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/latent_speed.py \\
        --out experiments/results/latent_speed.md

Every latent sampler reports what it calls (``nfe`` denoiser calls, ``decoder_calls``, ``encoder_calls``,
``backward_passes``). Its floor is what those calls cost with nothing around them: ``nfe`` bare denoiser forwards,
``decoder_calls`` bare decoder forwards and ``encoder_calls`` bare encoder forwards, each timed under
``torch.no_grad`` at the same batch. Each round times the floor's parts, then every sampler, back to back on one
measurement; the ratio sampler / floor is taken per round (paired, so machine noise common to a round cancels) and
the median over rounds is reported with its min-max range. A ratio near 1 means no overhead beyond the calls; the
backward passes that latent DPS, PSLD and STSL make through the denoiser and decoder are the expected excess
(about 2x, as for pixel DPS in ``sampler_speed.md``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from invsolve._atomic import write_text_atomic
from invsolve.datasets.brain import BrainSlices
from invsolve.pipeline.tuned import tuned_settings
from invsolve.priors.default import load_shipped_prior
from invsolve.samplers import latent_dps, psld, stsl
from invsolve.tasks import SAMPLER_TUNING_SEED, standard_tasks

PRIOR = "latent_brain"


def _stsl(m, p, kind, steps, g):
    return stsl(m, p, steps=steps, inner_steps=5, generator=g, **tuned_settings("stsl", kind, PRIOR, steps).settings)


SAMPLERS = {
    "latent DPS": lambda m, p, kind, steps, g: latent_dps(m, p, steps=4 * 11 * steps, generator=g),
    "PSLD": lambda m, p, kind, steps, g: psld(m, p, steps=4 * 11 * steps, generator=g, gamma=0.1),
    "STSL (x 5 inner)": _stsl,
}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def unit_costs(prior, batch: int, repeats: int, generator: torch.Generator) -> dict[str, float]:
    """Seconds per bare call of the denoiser, the decoder and the encoder at ``batch`` (mean of ``repeats``)."""
    z = torch.randn(batch, *prior.shape, generator=generator)
    x = torch.rand(batch, *prior.image_shape, generator=generator)
    with torch.no_grad():
        prior.denoise(z, 1.0), prior.decode(z), prior.encode(x)  # warm-up
        return {"denoise": _timed(lambda: [prior.denoise(z, 1.0) for _ in range(repeats)]) / repeats,
                "decode": _timed(lambda: [prior.decode(z) for _ in range(repeats)]) / repeats,
                "encode": _timed(lambda: [prior.encode(x) for _ in range(repeats)]) / repeats}


def floor_seconds(costs: dict[str, float], diagnostics: dict, nfe: int) -> float:
    """What a run's network calls cost bare: denoiser, decoder and encoder calls at their unit costs."""
    return (nfe * costs["denoise"] + diagnostics.get("decoder_calls", 0) * costs["decode"]
            + diagnostics.get("encoder_calls", 0) * costs["encode"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="MRI 8x,CT 8 views")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", type=int, default=4, help="STSL outer steps; latent DPS / PSLD run 4 x its NFE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    prior = load_shipped_prior(PRIOR)
    size = prior.image_shape[-1]
    stream = BrainSlices(size, split="tuning", seed=0)
    rows = []
    for task in standard_tasks(size, SAMPLER_TUNING_SEED, names=tuple(n.strip() for n in args.tasks.split(","))):
        for batch in (int(b) for b in args.batches.split(",")):
            truth = torch.stack([stream[i] for i in range(batch)])
            meas = task.measure(truth, torch.Generator().manual_seed(0))
            ratios: dict[str, list[float]] = {name: [] for name in SAMPLERS}
            calls: dict[str, str] = {}
            costs = {}
            for _ in range(args.rounds):
                costs = unit_costs(prior, batch, 20, torch.Generator().manual_seed(1))
                for name, run in SAMPLERS.items():
                    start = time.perf_counter()
                    out = run(meas, prior, task.kind, args.steps, torch.Generator().manual_seed(0))
                    seconds = time.perf_counter() - start
                    ratios[name].append(seconds / floor_seconds(costs, out.diagnostics, out.nfe))
                    d = out.diagnostics
                    calls[name] = (f"{out.nfe} | {d.get('decoder_calls', 0)} | {d.get('encoder_calls', 0)} | "
                                   f"{d.get('backward_passes', 0)}")
            for name, values in ratios.items():
                rows.append(f"| {task.name} | {batch} | {name} | {calls[name]} | {statistics.median(values):.2f} | "
                            f"{min(values):.2f}-{max(values):.2f} | {1000 * costs['denoise']:.1f} | "
                            f"{1000 * costs['decode']:.1f} |")
                print(rows[-1], flush=True)
    text = "\n".join([
        f"# Latent sampler time / its bare network calls (shipped {PRIOR} prior, 64x64 images, 4x16x16 latents, CPU)",
        "", f"STSL {args.steps} outer steps x 5 inner (its tuned settings); latent DPS and PSLD at 4x STSL's NFE; "
        f"{args.rounds} paired rounds. Floor = NFE bare denoiser forwards + decoder calls x a bare decode + encoder "
        "calls x a bare encode, at the same batch, no grad.", "",
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
        "Command: `OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/latent_speed.py "
        f"--tasks '{args.tasks}' --batches {args.batches} --steps {args.steps} --rounds {args.rounds} "
        f"--out {args.out}`", "",
        "| task | batch | sampler | NFE | decoder calls | encoder calls | backward passes | time / floor (median) "
        "| range | ms per denoise | ms per decode |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|", *rows, ""])
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
