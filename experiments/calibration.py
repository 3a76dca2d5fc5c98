"""Calibration of every posterior sampler on 64x64 brain images: simulation-based calibration and held-out anatomy.

Two sets of truths, the same measurements and samplers:

* ``sbc`` -- **simulation-based calibration** (Talts et al., 2018): truths are unconditional draws of the
  shipped brain prior itself (EDM Heun, 64 steps), so the prior is exactly right and every miscalibration is
  the sampler's own;
* ``real`` -- held-out brain slices (``BrainSlices(split="heldout", seed=0)``), where the prior's mismatch with
  real anatomy adds to the sampler's.

Per task (CT 8 views, MRI 8x; 1% noise; masks of the evaluation seed) and truth, each sampler draws ``--samples``
posterior samples (``--particles`` weighted particles for the SMC samplers; at most 64 either way) at its
declared default step count and the run layer's tuned settings for the brain prior. For every pixel the
**randomised PIT** of the truth among the samples (:func:`invsolve.metrics.randomized_pit`, the SBC rank,
weighted for particles) is uniform on (0, 1) under an exact sampler at any sample count, so:

* coverage of the central 50% and 90% intervals = fraction of PITs in (0.25, 0.75) and (0.05, 0.95): equal to
  50% / 90% for an exact sampler (no small-sample correction needed), pooled and per region (edges: the top
  20% of the truth's gradient magnitude; flat: the bottom 50%);
* the rank histogram (20 bins) and its total-variation distance from uniform (0 = flat; a U shape = too narrow,
  a hump = too wide);
* the standardised errors ``z = (truth - mean) / std``: their spread (1 when the std map is calibrated and the
  marginals Gaussian) and ``P(|z| < 1.645)``;
* PSNR / SSIM of the posterior mean, the mean std, the smallest ESS (weighted samplers), NFE and wall time.

Results accumulate per (set, task, sampler, truth) in a JSON store beside ``--out`` (rerunning skips what is
there); ``--report`` renders the table and the figures (rank histograms, coverage against nominal level)::

    OMP_NUM_THREADS=2 .venv/bin/python experiments/calibration.py --sets sbc real --truths 2
    .venv/bin/python experiments/calibration.py --report
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from invsolve._atomic import write_text_atomic
from invsolve.metrics import pit_histogram, psnr, randomized_pit, ssim, standardized_errors, uniformity_distance
from invsolve.pipeline.tuned import tuned_settings
from invsolve.priors.default import load_shipped_prior
from invsolve.samplers import declaration, unconditional, weighted_moments
from invsolve.tasks import EVALUATION_SEED, standard_tasks

PRIOR = "brain"
TASKS = ("CT 8 views", "MRI 8x")
SETS = {"sbc": "SBC: truths drawn from the prior", "real": "held-out brain slices"}
#: row label -> (declared sampler, weighted?, settings on top of the tuned ones)
SAMPLERS = {
    "DPS": ("dps", False, {}),
    "PiGDM": ("pigdm", False, {}),
    "DDRM": ("ddrm", False, {}),
    "RED-Diff": ("red-diff", False, {}),
    "AFES": ("afes", True, {}),
    "FKC": ("fkc", True, {}),
    "TDS": ("tds", True, {}),
    "DAPS": ("daps", False, {}),
    "FKC+tempering": ("fkc", True, {"cess_target": 0.5, "moves": 1}),
}
BINS = 20
LEVELS = tuple(round(0.1 * k, 1) for k in range(1, 10))
REGIONS = ("all", "edges", "flat")
DEFAULT_OUT = Path(__file__).parent / "results" / "calibration.md"


def truths(which: str, n: int, prior) -> torch.Tensor:
    """``(n, 1, 64, 64)`` truths of one set (seeded, the same on every run)."""
    if which == "sbc":
        draws = unconditional(None, prior, steps=64, n_samples=n, generator=torch.Generator().manual_seed(7))
        return draws.samples[:, 0]
    from invsolve.datasets.brain import BrainSlices

    data = BrainSlices(prior.shape[-1], split="heldout", seed=0)
    return torch.stack([data[i] for i in range(n)])


def regions(truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean masks of ``truth (1, H, W)``: all pixels, edges (top 20% Sobel magnitude), flat (bottom 50%)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    img = truth.float()[None]
    gx = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kx[None, None])
    gy = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kx.T[None, None])
    mag = (gx.square() + gy.square()).sqrt()[0]
    return {"all": torch.ones_like(mag, dtype=torch.bool), "edges": mag >= mag.quantile(0.8),
            "flat": mag <= mag.quantile(0.5)}


def score(truth: torch.Tensor, samples: torch.Tensor, weights: torch.Tensor | None, seed: int) -> dict:
    """Calibration and quality of one sample set ``(N, 1, H, W)`` against ``truth (1, H, W)``."""
    pit = randomized_pit(truth, samples, weights, generator=torch.Generator().manual_seed(seed))
    z = standardized_errors(truth, samples, weights)
    log_w = None if weights is None else weights.double().clamp_min(1e-300).log()
    mean, std = weighted_moments(samples.double(), log_w)
    out = {"psnr": psnr(truth[0].double(), mean[0], data_range=1.0),
           "ssim": ssim(truth[0].double(), mean[0], data_range=1.0), "mean_std": float(std.mean()),
           "z_spread": float(z.std()), "z_within_1645": float((z.abs() < 1.645).double().mean())}
    for name, mask in regions(truth).items():
        out[f"hist_{name}"] = pit_histogram(pit[mask], BINS).tolist()
    return out


def run_one(label: str, task, prior, truth: torch.Tensor, index: int, args) -> dict:
    name, weighted, extra = SAMPLERS[label]
    decl = declaration(name)
    steps = args.steps or decl.default_steps
    settings = dict(tuned_settings(name, task.kind, PRIOR, steps).settings) | extra
    meas = task.measure(truth[None], torch.Generator().manual_seed(1000 + index))
    n = args.particles if weighted else args.samples
    t0 = time.perf_counter()
    out = decl.run(meas, prior, steps=steps, n_samples=n, generator=torch.Generator().manual_seed(2000 + index),
                   **settings)
    wall = time.perf_counter() - t0
    weights = out.weights[:, 0].double() if out.log_weights is not None else None
    res = score(truth, out.samples[:, 0], weights, seed=3000 + index)
    res |= {"nfe": out.nfe, "wall_s": wall, "n": n, "steps": steps,
            "settings": {k: v for k, v in settings.items() if isinstance(v, (int, float, str))}}
    if weights is not None and "ess" in out.diagnostics:
        res["min_ess"] = float(out.diagnostics["ess"].min())
    return res


def coverage(hist: list[float], level: float) -> float:
    """Central-interval coverage from a 20-bin PIT histogram (levels on the 0.05 grid align with its edges)."""
    h = torch.tensor(hist, dtype=torch.float64)
    tail = round((1 - level) / 2 * BINS)
    return float(h[tail:BINS - tail].sum() / h.sum())


def pooled(rows: list[dict], field: str) -> list[float]:
    return [float(sum(col)) for col in zip(*(r[field] for r in rows))]


def render(store: dict, commands: list[str]) -> str:
    lines = ["# Calibration of posterior samplers on brain images (64x64, CT 8 views and MRI 8x, 1% noise)", "",
             " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "), "",
             "Coverage is pooled over the pixels of all truths of a set (truth-to-truth spread in the JSON store). "
             "Targets (issue 23, SBC): 90% coverage in [0.85, 0.95] and 50% in [0.42, 0.58], posterior-mean PSNR "
             "at most 0.5 dB below DPS's, at most 64 samples or particles.", ""]
    for which, title in SETS.items():
        for task in TASKS:
            rows_by = {label: [v for k, v in store.items() if k.startswith(f"{which}/{task}/{label}/")]
                       for label in SAMPLERS}
            rows_by = {k: v for k, v in rows_by.items() if v}
            if not rows_by:
                continue
            dps_psnr = (sum(r["psnr"] for r in rows_by["DPS"]) / len(rows_by["DPS"])) if "DPS" in rows_by else None
            lines += [f"## {title}: {task} ({len(next(iter(rows_by.values())))} truths)", "",
                      "| sampler | N | NFE | PSNR | SSIM | cov 50% | cov 90% | cov 90% edges | cov 90% flat | "
                      "rank hist. TV | z spread | P(abs z < 1.645) | mean std | min ESS | s / truth | SBC target |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
            for label, rows in rows_by.items():
                def avg(field):
                    return sum(r[field] for r in rows) / len(rows)

                h = {reg: pooled(rows, f"hist_{reg}") for reg in REGIONS}
                c50, c90 = coverage(h["all"], 0.5), coverage(h["all"], 0.9)
                ess = f"{min(r['min_ess'] for r in rows):.1f}" if "min_ess" in rows[0] else "–"
                met = "–"
                if which == "sbc" and dps_psnr is not None:
                    ok = 0.85 <= c90 <= 0.95 and 0.42 <= c50 <= 0.58 and avg("psnr") >= dps_psnr - 0.5
                    met = "**met**" if ok else "missed"
                lines.append(
                    f"| {label} | {rows[0]['n']} | {rows[0]['nfe']} | {avg('psnr'):.2f} | {avg('ssim'):.3f} | {c50:.3f} | "
                    f"{c90:.3f} | {coverage(h['edges'], 0.9):.3f} | {coverage(h['flat'], 0.9):.3f} | "
                    f"{uniformity_distance(torch.tensor(h['all'])):.3f} | {avg('z_spread'):.3g} | "
                    f"{avg('z_within_1645'):.3f} | {avg('mean_std'):.4f} | {ess} | {avg('wall_s'):.0f} | {met} |")
            lines.append("")
    lines += ["Figures: `calibration/<set>_rank_histograms.png` (pooled PIT histograms; the dashed line is uniform), "
              "`calibration/<set>_coverage.png` (coverage of the central interval against its nominal level).", "",
              "Commands:", "", *(f"    {c}" for c in commands), ""]
    return "\n".join(lines)


def figures(store: dict, fig_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    for which in SETS:
        present = [(task, label) for task in TASKS for label in SAMPLERS
                   if any(k.startswith(f"{which}/{task}/{label}/") for k in store)]
        if not present:
            continue
        labels = [lb for lb in SAMPLERS if any(p[1] == lb for p in present)]
        fig, axes = plt.subplots(len(TASKS), len(labels), figsize=(1.9 * len(labels), 1.9 * len(TASKS)), squeeze=False)
        fig2, axes2 = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.8), squeeze=False)
        for r, task in enumerate(TASKS):
            ax2 = axes2[0, r]
            ax2.plot([0, 1], [0, 1], "k--", lw=0.8)
            for c, label in enumerate(labels):
                rows = [v for k, v in store.items() if k.startswith(f"{which}/{task}/{label}/")]
                ax = axes[r, c]
                if not rows:
                    ax.axis("off")
                    continue
                h = torch.tensor(pooled(rows, "hist_all"))
                ax.bar((torch.arange(BINS) + 0.5) / BINS, h / h.sum() * BINS, width=1 / BINS, color="tab:blue")
                ax.axhline(1.0, color="k", ls="--", lw=0.8)
                ax.set_ylim(0, 4)
                ax.set_xticks([0, 0.5, 1])
                ax.set_title(f"{label}\n{task}", fontsize=7)
                ax.tick_params(labelsize=6)
                ax2.plot(LEVELS, [coverage(h.tolist(), lv) for lv in LEVELS], marker="o", ms=3, label=label)
            ax2.set_title(f"{task}", fontsize=9)
            ax2.set_xlabel("nominal level")
            ax2.set_ylabel("coverage")
            if ax2.get_legend_handles_labels()[0]:
                ax2.legend(fontsize=6)
        for f, name in ((fig, "rank_histograms"), (fig2, "coverage")):
            f.suptitle(SETS[which], fontsize=9)
            f.tight_layout()
            tmp = fig_dir / f"{which}_{name}.tmp.png"
            f.savefig(tmp, dpi=110)
            plt.close(f)
            tmp.replace(fig_dir / f"{which}_{name}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument("--truths", type=int, default=2)
    p.add_argument("--samples", type=int, default=16, help="independent samples (unweighted samplers)")
    p.add_argument("--particles", type=int, default=32, help="weighted particles (AFES, FKC, TDS)")
    p.add_argument("--steps", type=int, default=None, help="override every sampler's declared step count (smoke runs)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--report", action="store_true", help="only render the table and figures from the store")
    args = p.parse_args()
    if not 1 <= args.samples <= 64 or not 1 <= args.particles <= 64:
        p.error("--samples and --particles must lie in [1, 64] (the issue's budget)")
    out_md = Path(args.out)
    store_path = out_md.with_suffix(".json")
    store = json.loads(store_path.read_text()) if store_path.exists() else {}
    if not args.report:
        prior = load_shipped_prior(PRIOR)
        tasks = standard_tasks(prior.shape[-1], EVALUATION_SEED, names=tuple(args.tasks))
        for which in args.sets:
            truth_set = truths(which, args.truths, prior)
            for task in tasks:
                for label in args.samplers:
                    for i in range(args.truths):
                        key = f"{which}/{task.name}/{label}/{i}"
                        if key in store:
                            continue
                        store[key] = run_one(label, task, prior, truth_set[i], i, args)
                        shown = {k: round(v, 3) for k, v in store[key].items() if isinstance(v, float)}
                        print(key, shown, flush=True)
                        write_text_atomic(store_path, json.dumps(store, indent=1, sort_keys=True))
        command = (f"OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python experiments/calibration.py "
                   + shlex.join(sys.argv[1:]))
        store["_commands"] = list(dict.fromkeys(store.get("_commands", []) + [command]))
        write_text_atomic(store_path, json.dumps(store, indent=1, sort_keys=True))
    commands = store.get("_commands", ["experiments/calibration.py"])
    results = {k: v for k, v in store.items() if not k.startswith("_")}
    figures(results, out_md.with_suffix(""))
    write_text_atomic(out_md, render(results, commands))
    print(f"wrote {out_md}")


if __name__ == "__main__":
    main()
