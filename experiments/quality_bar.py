"""The quality bar of the default prior: DPS vs the classical baseline and tuned TV on held-out phantoms.

Run one or more tasks (each writes ``<out-dir>/<task>.json``), then build the table from every json::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/quality_bar.py --tasks "CT 8 views" --dps-steps 1000
    OMP_NUM_THREADS=1 .venv/bin/python experiments/quality_bar.py --tasks "CT 16 views,MRI 4x,MRI 8x,Inpainting 50%"
    .venv/bin/python experiments/quality_bar.py --report experiments/results/quality_bar.md

Phantoms: items ``0..n-1`` of ``EllipsePhantoms(64, seed=EVALUATION_SEED)``, never seen in training
(seed 0) or in tuning TV (``TV_TUNING_SEED``) and the samplers (``SAMPLER_TUNING_SEED``). Each
method's output is clipped to ``[0, 1]`` and scored by PSNR / SSIM (fastMRI definitions). DPS
draws one posterior sample per phantom (``zeta`` from the tuned table, :mod:`invsolve.pipeline.tuned`). The table gives
mean +- a 95% t-interval over phantoms, and the paired differences DPS - baseline and DPS - TV
with their 95% t-intervals.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.pipeline.tuned import tuned_settings
from invsolve.measurement import Measurement
from invsolve.metrics import format_interval, psnr, ssim
from invsolve.priors.default import load_default_prior
from invsolve.samplers import ddrm, dps
from invsolve.tasks import EVALUATION_SEED, NOISE_LEVEL, TASK_NAMES, phantoms, standard_tasks

DEFAULT_OUT = Path(__file__).parent / "results" / "quality_bar"
def run_task(task, prior, truth: torch.Tensor, *, dps_steps: int, ddrm_steps: int, batch: int) -> dict:
    lo, hi = prior.value_range
    meas_all = task.measure(truth, torch.Generator().manual_seed(EVALUATION_SEED))
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}

    def score(method: str, images: torch.Tensor, ref: torch.Tensor, elapsed: float) -> None:
        entry = scores.setdefault(method, {"psnr": [], "ssim": []})
        for i in range(len(ref)):
            image = images[i, 0].clamp(lo, hi)
            entry["psnr"].append(psnr(ref[i, 0], image))
            entry["ssim"].append(ssim(ref[i, 0], image))
        seconds[method] = seconds.get(method, 0.0) + elapsed

    for start in range(0, len(truth), batch):
        ref = truth[start:start + batch]
        y = meas_all.y[start:start + batch]
        meas = Measurement(meas_all.operator, meas_all.noise, y)
        methods = {
            task.baseline_name: lambda: task.baseline(y),
            "TV": lambda: tv_reconstruct(task.operator, y, task.tv_weight, iterations=300, nonnegative=True),
            "DPS": lambda: dps(meas, prior, steps=dps_steps, generator=torch.Generator().manual_seed(start),
                               zeta=tuned_settings("dps", task.kind, "default", dps_steps).settings["zeta"]).samples[0],
        }
        if ddrm_steps > 0:
            methods["DDRM"] = lambda: ddrm(meas, prior, steps=ddrm_steps,
                                           generator=torch.Generator().manual_seed(start)).samples[0]
        for method, fn in methods.items():
            t0 = time.perf_counter()
            with torch.no_grad():  # DPS enables gradients itself where it needs them
                images = fn()
            score(method, images.detach(), ref, time.perf_counter() - t0)
            print(f"{task.name} [{start}:{start + len(ref)}] {method}: "
                  f"{statistics.mean(scores[method]['psnr'][-len(ref):]):.2f} dB", flush=True)
    return {"task": task.name, "baseline": task.baseline_name, "n": len(truth), "sigma_y": meas_all.sigma_y,
            "dps_steps": dps_steps, "dps_zeta": tuned_settings("dps", task.kind, "default", dps_steps).settings["zeta"], "ddrm_steps": ddrm_steps,
            "tv_weight": task.tv_weight, "scores": scores, "seconds": seconds,
            "threads": torch.get_num_threads()}


def report(out_dir: Path, path: Path) -> str:
    results = {}
    for file in sorted(out_dir.glob("*.json")):
        r = json.loads(file.read_text())
        results[r["task"]] = r
    lines = [
        "# Quality bar of the default prior",
        "",
        f"Held-out random-ellipse phantoms 64x64 (`EllipsePhantoms(seed={EVALUATION_SEED})`), relative noise "
        f"{NOISE_LEVEL}. Mean +- 95% t-interval over phantoms; every image clipped to [0, 1]; PSNR/SSIM as in "
        "fastMRI. DPS: one posterior sample per phantom. 'DPS - X' is the paired difference in PSNR.",
        "",
        "| task | n | baseline PSNR | TV PSNR | DDRM PSNR | DPS PSNR | DPS SSIM | DPS - baseline (dB) | DPS - TV (dB) | DPS steps | DPS s/image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in TASK_NAMES:
        if name not in results:
            continue
        r = results[name]
        s = r["scores"]
        base, tv, d = s[r["baseline"]]["psnr"], s["TV"]["psnr"], s["DPS"]["psnr"]

        fmt = format_interval
        ddrm_cell = fmt(s["DDRM"]["psnr"]) if "DDRM" in s else "-"
        lines.append(
            f"| {name} | {r['n']} | {fmt(base)} ({r['baseline']}) | {fmt(tv)} | {ddrm_cell} | {fmt(d)} | "
            f"{fmt(s['DPS']['ssim'])} | {fmt([a - b for a, b in zip(d, base)])} | {fmt([a - b for a, b in zip(d, tv)])} | "
            f"{r['dps_steps']} | {r['seconds']['DPS'] / r['n']:.1f} |"
        )
    lines += [
        "",
        "Bar: DPS - baseline >= 3 dB on every task; DPS - TV > 0 on CT 8 views and MRI 8x.",
        "",
        "'DPS s/image' is wall time per image in batches of 10 on one thread of a 2-core machine shared with "
        "up to four other jobs: an upper bound, not a benchmark (see experiments/results/sampler_speed.md).",
        "",
        "Commands (each task writes `experiments/results/quality_bar/<task>.json`; threads per run in the json):",
        "",
        "```",
        *sorted({f"OMP_NUM_THREADS=1 .venv/bin/python experiments/quality_bar.py --tasks \"{r['task']}\" "
                 f"--phantoms {r['n']} --dps-steps {r['dps_steps']} --ddrm-steps {r['ddrm_steps']}"
                 for r in results.values()}),
        ".venv/bin/python experiments/quality_bar.py --report experiments/results/quality_bar.md",
        "```",
    ]
    text = "\n".join(lines) + "\n"
    write_text_atomic(path, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASK_NAMES))
    parser.add_argument("--phantoms", type=int, default=20)
    parser.add_argument("--dps-steps", type=int, default=200)
    parser.add_argument("--ddrm-steps", type=int, default=20, help="0 skips DDRM")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--report", type=Path, default=None, help="only build the table from the jsons")
    args = parser.parse_args()
    if args.report is not None:
        print(report(args.out_dir, args.report))
        return
    prior = load_default_prior()
    truth = phantoms(EVALUATION_SEED, args.phantoms, prior.shape[-1])
    names = tuple(n.strip() for n in args.tasks.split(","))
    for task in standard_tasks(prior.shape[-1], EVALUATION_SEED, names=names):
        result = run_task(task, prior, truth, dps_steps=args.dps_steps, ddrm_steps=args.ddrm_steps, batch=args.batch)
        write_text_atomic(args.out_dir / f"{task.slug}.json", json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
