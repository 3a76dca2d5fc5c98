"""Side by side with deepinv 0.5: DPS, DDRM and DiffPIR on the same network, operator, noise and step count.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/deepinv_side_by_side.py \\
        --out experiments/results/deepinv_side_by_side.md

Both libraries drive the *same* network object: the shipped brain prior (64x64; a randomly initialised 21.6 M
parameter ADM UNet at 256x256, time only) is handed to deepinv as a ``deepinv.models.Denoiser`` (``D(x, sigma)``
on images in [0, 1]: deepinv's convention and ours agree), and a forward hook on the raw network counts every
call, whichever library makes it. Both see the same operator (deepinv gets a ``LinearPhysics`` over our operator's
``A`` / ``A_adjoint``, or, for DDRM, which needs an SVD, deepinv's own ``Inpainting`` with the same mask), the same
measurement and noise level, and the same number of steps, counted as network calls (deepinv's DPS gets
``num_steps = steps + 1`` time points: it makes one call per interval between them). One image per run (batch 1), one posterior sample; the
two libraries alternate per image so that machine drift hits both.

Settings: ours come from the run layer's tuned table for the brain prior (tuned on the brain tuning split);
deepinv's hyperparameters (DPS ``weight``, DiffPIR ``lambda_``, DDRM ``eta``) and our DiffPIR's ``lam`` are chosen per
task by the same search on slices of the same tuning split (reported), so neither side is handicapped by defaults. deepinv's DPS runs in
float32 (its default is float64, which would only slow it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import invsolve  # noqa: F401  (applies the torchvision guard before deepinv is imported)
import deepinv
from bench_common import NetworkCalls, parameter_count, timed, wide_prior
from invsolve._atomic import write_text_atomic
from invsolve.datasets.brain import BrainSlices
from invsolve.measurement import Measurement
from invsolve.pipeline.tuned import tuned_settings
from invsolve.priors.default import load_shipped_prior
from invsolve.priors.edm import EDMPrior
from invsolve.samplers import ddrm, diffpir, dps
from invsolve.study.runner import scores
from invsolve.tasks import standard_tasks

STEPS = {"DPS": 100, "DDRM": 20, "DiffPIR": 100}
TASKS = ("CT 8 views", "MRI 4x", "Inpainting 50%")
#: Hyperparameters searched per task on the tuning split, by (library, sampler): (name, its default, ladder
#: factor); the search climbs a geometric ladder from the default (x factor or / factor) while the mean PSNR
#: improves. deepinv's DDRM eta lives in [0, 1]: its grid is the paper's 0.85 and ours, 1.0. Our DPS and DDRM
#: settings come from the run layer's tuned table (tuned on the same split); our DiffPIR is new, so it is searched
#: here exactly as deepinv's is.
SEARCH = {("deepinv", "DPS"): ("weight", 1.0, 3.0), ("deepinv", "DiffPIR"): ("lambda_", 7.0, 3.0),
          ("invsolve", "DiffPIR"): ("lam", 7.0, 3.0)}
DDRM_ETAS = (0.85, 1.0)


class PriorAsDeepinvDenoiser(deepinv.models.Denoiser):
    """An invsolve prior as a deepinv denoiser: ``D(x, sigma)`` with ``x`` in the prior's value range.

    ``sigma = 0`` (deepinv's DDRM ends its schedule there) returns ``x`` itself, the exact denoiser at zero noise,
    without a network call; positive levels below the prior's ``sigma_min`` are raised to it.
    """

    def __init__(self, prior: EDMPrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: torch.Tensor, sigma: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if bool((s <= 0).all()):
            return x
        s = s.clamp_min(self.prior.sigma_min)
        return self.prior.denoise(x, s if s.numel() > 1 else s.expand(x.shape[0]))


def deepinv_physics(measurement: Measurement) -> deepinv.physics.LinearPhysics:
    op = measurement.operator
    noise = deepinv.physics.GaussianNoise(sigma=float(measurement.noise.sigma))
    return deepinv.physics.LinearPhysics(A=op.A, A_adjoint=op.A_adjoint, noise_model=noise)


def deepinv_inpainting(measurement: Measurement) -> deepinv.physics.Inpainting:
    mask = measurement.operator.physics.mask
    noise = deepinv.physics.GaussianNoise(sigma=float(measurement.noise.sigma))
    return deepinv.physics.Inpainting(img_size=tuple(mask.shape[1:]), mask=mask.clone(), noise_model=noise)


@dataclass(frozen=True)
class Method:
    library: str
    sampler: str
    run: Callable[[Measurement, EDMPrior, int, dict], torch.Tensor]
    supports: Callable[[str], bool] = lambda kind: True


def _ours_dps(m, prior, seed, opts):
    zeta = opts.get("zeta") or tuned_settings("dps", opts["kind"], opts["prior_name"], STEPS["DPS"]).settings["zeta"]
    return dps(m, prior, steps=opts["steps"], zeta=zeta, generator=torch.Generator().manual_seed(seed)).mean


def _ours_ddrm(m, prior, seed, opts):
    eta = opts.get("eta") or tuned_settings("ddrm", opts["kind"], opts["prior_name"], STEPS["DDRM"]).settings["eta"]
    return ddrm(m, prior, steps=opts["steps"], eta=eta, generator=torch.Generator().manual_seed(seed)).mean


def _ours_diffpir(m, prior, seed, opts):
    return diffpir(m, prior, steps=opts["steps"], lam=opts["lam"], generator=torch.Generator().manual_seed(seed)).mean


def _deepinv_dps(m, prior, seed, opts):
    # deepinv's num_steps counts time points; its ancestral solver makes one network call per interval between
    # them, num_steps - 1 in all (measured by the hook). One more point makes the calls equal to ours.
    model = deepinv.sampling.DPS(PriorAsDeepinvDenoiser(prior), num_steps=opts["steps"] + 1, weight=opts["weight"],
                                 dtype=torch.float32, rng=torch.Generator().manual_seed(seed))
    return model(m.y, deepinv_physics(m), x_init=(1, *prior.shape))


def _deepinv_ddrm(m, prior, seed, opts):
    torch.manual_seed(seed)  # deepinv's DDRM draws from the global generator
    # its last level is 0, where the denoiser is the identity (no call): steps + 1 levels make `steps` calls
    model = deepinv.sampling.DDRM(PriorAsDeepinvDenoiser(prior), sigmas=np.linspace(1, 0, opts["steps"] + 1),
                                  eta=opts["eta"])
    return model(m.y, deepinv_inpainting(m))


def _deepinv_diffpir(m, prior, seed, opts):
    torch.manual_seed(seed)  # deepinv's DiffPIR draws from the global generator
    model = deepinv.sampling.DiffPIR(PriorAsDeepinvDenoiser(prior), deepinv.optim.data_fidelity.L2(),
                                     max_iter=opts["steps"], lambda_=opts["lambda_"])
    return model(m.y, deepinv_physics(m))


METHODS = [
    Method("invsolve", "DPS", _ours_dps),
    Method("deepinv", "DPS", _deepinv_dps),
    Method("invsolve", "DDRM", _ours_ddrm),
    Method("deepinv", "DDRM", _deepinv_ddrm, supports=lambda kind: kind == "inpainting"),
    Method("invsolve", "DiffPIR", _ours_diffpir),
    Method("deepinv", "DiffPIR", _deepinv_diffpir),
]
METHODS_ALL = tuple(METHODS)


def slices(split: str, count: int, size: int) -> list[torch.Tensor]:
    data = BrainSlices(size, split=split, seed=0)
    return [data[i][None] for i in range(count)]


def run_one(method: Method, m: Measurement, prior: EDMPrior, seed: int, opts: dict, calls: NetworkCalls):
    with calls.counting():
        out, seconds = timed(lambda: method.run(m, prior, seed, opts))
    return out.detach().float(), seconds, calls.count


def climb(score: Callable[[float], float], start: float, factor: float, max_moves: int = 8) -> tuple[float, float]:
    """``(value, score)``, the best found on the ladder ``start * factor^j``: score ``start`` and its upper
    neighbour (and, if that is no better, its lower one), then keep stepping the improving way until it worsens."""
    seen = {0: score(start), 1: score(start * factor)}
    direction = 1 if seen[1] > seen[0] else -1
    if direction == -1:
        seen[-1] = score(start / factor)
    j = direction
    while seen[j] > seen[j - direction] and abs(j) < max_moves:
        seen[j + direction] = score(start * factor ** (j + direction))
        j += direction
    best = max(seen, key=seen.get)
    return start * factor**best, seen[best]


def tune(prior, calls, tasks, tuning, steps_scale: float) -> dict[tuple[str, str, str], dict]:
    """Searched hyperparameters per (task, library, sampler): the best mean PSNR on ``tuning`` (:func:`climb`;
    deepinv's DDRM: a grid)."""
    chosen = {}
    for setup in tasks:
        truths_meas = [(t, setup.measure(t, torch.Generator().manual_seed(100 + i))) for i, t in enumerate(tuning)]
        for method in METHODS:
            searched = (method.library, method.sampler) in SEARCH or method.library == "deepinv"
            if not searched or not method.supports(setup.kind):
                continue

            def mean_psnr(key, value, method=method):
                opts = {"steps": max(1, round(STEPS[method.sampler] * steps_scale)), key: value,
                        "kind": setup.kind, "prior_name": "brain"}
                psnr = statistics.mean(
                    scores(t[0, 0], run_one(method, m, prior, 0, opts, calls)[0].clamp(0, 1)[0, 0])["psnr"]
                    for t, m in truths_meas)
                print(f"tune {setup.label} {method.library} {method.sampler} {key}={value:g}: {psnr:.2f} dB", flush=True)
                return psnr

            if method.sampler == "DDRM":
                key = "eta"
                best = max(((v, mean_psnr(key, v)) for v in DDRM_ETAS), key=lambda vp: vp[1])
            else:
                key, start, factor = SEARCH[(method.library, method.sampler)]
                best = climb(lambda v: mean_psnr(key, v), start, factor)
            chosen[(setup.label, method.library, method.sampler)] = {key: best[0]}
    return chosen


def quality_run(args) -> list[dict]:
    prior = load_shipped_prior("brain")
    calls = NetworkCalls(prior)
    tasks = standard_tasks(64, 0, names=TASKS)
    chosen = tune(prior, calls, tasks, slices("tuning", args.tuning_images, 64), args.steps_scale)
    rows = []
    for setup in tasks:
        for i, truth in enumerate(slices("heldout", args.images, 64)):
            m = setup.measure(truth, torch.Generator().manual_seed(i))
            for method in METHODS:
                if not method.supports(setup.kind):
                    continue
                opts = {"steps": max(1, round(STEPS[method.sampler] * args.steps_scale)), "kind": setup.kind,
                        "prior_name": "brain"}
                opts.update(chosen.get((setup.label, method.library, method.sampler), {}))
                if method.library == "invsolve" and method.sampler in ("DPS", "DDRM"):
                    key = {"DPS": "zeta", "DDRM": "eta"}[method.sampler]
                    opts[key] = tuned_settings(method.sampler.lower(), setup.kind, "brain", opts["steps"]).settings[key]
                est, seconds, n_calls = run_one(method, m, prior, i, opts, calls)
                s = scores(truth[0, 0], est.clamp(0, 1)[0, 0])
                rows.append({"size": 64, "task": setup.label, "image": i, "library": method.library,
                             "sampler": method.sampler, "steps": opts["steps"], "seconds": seconds,
                             "network_calls": n_calls, "psnr": s["psnr"], "ssim": s["ssim"],
                             "settings": {k: v for k, v in opts.items() if k not in ("kind", "prior_name")}})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _paired(method: Method, kind: str) -> bool:
    """Whether both libraries run ``method.sampler`` on problems of ``kind``."""
    return all(m.supports(kind) for m in METHODS if m.sampler == method.sampler) and \
        len({m.library for m in METHODS if m.sampler == method.sampler}) == 2


def timing_run(args) -> list[dict]:
    prior = wide_prior(256)
    calls = NetworkCalls(prior)
    rows = []
    truth = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    for setup in standard_tasks(256, 0, names=TASKS):
        m = setup.measure(truth, torch.Generator().manual_seed(0))
        for rep in range(args.repeats_256):
            for method in METHODS:
                if not _paired(method, setup.kind):
                    continue
                opts = {"steps": args.steps_256, "kind": setup.kind, "prior_name": "brain",
                        "weight": 1.0, "lambda_": 7.0, "lam": 7.0, "eta": 0.85}
                _, seconds, n_calls = run_one(method, m, prior, rep, opts, calls)
                rows.append({"size": 256, "task": setup.label, "image": rep, "library": method.library,
                             "sampler": method.sampler, "steps": args.steps_256, "seconds": seconds,
                             "network_calls": n_calls, "parameters": parameter_count(prior)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _paired_ratio(rows, task, sampler, size) -> tuple[float, float, float] | None:
    ours = {r["image"]: r["seconds"] for r in rows if (r["task"], r["sampler"], r["size"], r["library"]) ==
            (task, sampler, size, "invsolve")}
    theirs = {r["image"]: r["seconds"] for r in rows if (r["task"], r["sampler"], r["size"], r["library"]) ==
              (task, sampler, size, "deepinv")}
    pairs = [ours[k] / theirs[k] for k in ours if k in theirs]
    return (statistics.median(pairs), min(pairs), max(pairs)) if pairs else None


def to_markdown(rows: list[dict]) -> str:
    lines = ["# invsolve vs deepinv 0.5 on the same network, operator, noise and steps", "",
             "Commands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in rows)), "",
             f"Machine: {platform.machine()}, torch {torch.__version__}, deepinv {deepinv.__version__}, "
             f"{torch.get_num_threads()} threads, CPU. Batch 1, one posterior sample per run; time per image is the "
             "whole call (set-up included); network calls counted by a hook on the shared network. 'ratio' = median "
             "over images of the paired time ratio invsolve / deepinv (min-max in brackets).", ""]
    for size in sorted({r["size"] for r in rows}):
        sub = [r for r in rows if r["size"] == size]
        quality = "psnr" in sub[0]
        lines += [f"## {size}x{size}" + ("" if quality else " (randomly initialised network: time only)"), ""]
        head = "| task | sampler | library | steps | network calls | time per image (s) |"
        head += " PSNR (dB) | SSIM |" if quality else ""
        head += " ratio invsolve / deepinv | settings |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        keys = list(dict.fromkeys((r["task"], r["sampler"], r["library"]) for r in sub))
        for task, sampler, library in keys:
            group = [r for r in sub if (r["task"], r["sampler"], r["library"]) == (task, sampler, library)]
            secs = statistics.median(r["seconds"] for r in group)
            cells = [task, sampler, library, str(group[0]["steps"]), str(group[0]["network_calls"]), f"{secs:.2f}"]
            if quality:
                cells += [f"{statistics.mean(r['psnr'] for r in group):.2f}",
                          f"{statistics.mean(r['ssim'] for r in group):.4f}"]
            ratio = _paired_ratio(sub, task, sampler, size) if library == "invsolve" else None
            cells.append(f"{ratio[0]:.2f} ({ratio[1]:.2f}-{ratio[2]:.2f})" if ratio else "")
            settings = group[0].get("settings", {})
            cells.append(", ".join(f"{k}={v:.3g}" for k, v in settings.items() if k != "steps"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="held-out brain slices per task at 64x64")
    parser.add_argument("--tuning-images", type=int, default=2, help="tuning slices for deepinv's grid search")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (quick runs)")
    parser.add_argument("--steps-256", type=int, default=5, help="steps per run at 256x256 (time per step)")
    parser.add_argument("--repeats-256", type=int, default=2)
    parser.add_argument("--sizes", default="64,256",
                        help="which parts to run; with --out, rows of the other sizes are kept from its .json")
    parser.add_argument("--samplers", default=",".join(STEPS),
                        help="which samplers to run; with --out, the other samplers' rows are kept from its .json")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sizes = {int(s) for s in args.sizes.split(",")}
    chosen = {name.strip() for name in args.samplers.split(",")}
    unknown = chosen - set(STEPS)
    if unknown:
        parser.error(f"unknown sampler(s) {sorted(unknown)}; choose from {list(STEPS)}")
    METHODS[:] = [m for m in METHODS if m.sampler in chosen]
    command = "OMP_NUM_THREADS=2 .venv/bin/python experiments/benchmarks/deepinv_side_by_side.py " + " ".join(sys.argv[1:])
    rows = []
    store = Path(args.out).with_suffix(".json") if args.out else None
    if store is not None and store.exists():
        rows = [r for r in json.loads(store.read_text()) if r["size"] not in sizes or r["sampler"] not in chosen]
    if 64 in sizes:
        rows += [dict(r, command=command) for r in quality_run(args)]
    if 256 in sizes:
        rows += [dict(r, command=command) for r in timing_run(args)]
    order = {(m.sampler, m.library): i for i, m in enumerate(METHODS_ALL)}
    tasks = {t: i for i, t in enumerate(TASKS)}
    rows.sort(key=lambda r: (r["size"], tasks[r["task"]], order[(r["sampler"], r["library"])], r["image"]))
    text = to_markdown(rows)
    print(text)
    if args.out:
        write_text_atomic(Path(args.out), text)
        write_text_atomic(store, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
