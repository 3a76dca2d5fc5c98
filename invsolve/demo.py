"""The main job: reconstruct a held-out phantom with every posterior sampler on the default prior.

For each standard task (:mod:`invsolve.tasks`: sparse-view CT with 8 and 16 views, MRI at 4x and
8x, 50% inpainting) a 64x64 random-ellipse phantom the prior never saw is measured with 1% noise
and reconstructed by the classical baseline (FBP / zero-filled / masked image), tuned TV, and
each sampler (DPS, PiGDM, RED-Diff, DDRM) drawing ``n_samples`` posterior samples. Every reconstruction is
clipped to the data range ``[0, 1]`` before it is scored (PSNR, SSIM, NMSE as fastMRI defines
them). Outputs, all written atomically: one figure per task (ground truth, measurement, baseline,
TV, then per sampler the posterior mean, the posterior std, the error of the mean and one
sample), ``metrics.md`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from invsolve._atomic import write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.demo_figures import TaskPanel, save_task_figure
from invsolve.measurement import Measurement
from invsolve.metrics import nmse, psnr, ssim
from invsolve.priors.base import Prior
from invsolve.samplers import ddrm, dps, pigdm, red_diff
from invsolve.samplers.output import SamplerOutput
from invsolve.tasks import EVALUATION_SEED, NOISE_LEVEL, TASK_NAMES, ReconstructionTask, phantoms, standard_tasks

#: DPS step size ``zeta'`` per task, from ``experiments/tune_samplers.py`` (experiments/results/sampler_tuning.md).
DPS_ZETA = {"CT 8 views": 0.02, "CT 16 views": 0.02, "MRI 4x": 1.0, "MRI 8x": 1.0, "Inpainting 50%": 1.0,
            "Gaussian deblur": 1.0, "SR 4x": 3.0}
#: The demo runs DPS for 100 steps only; there the CT tasks want a larger step (0.05: +2 dB over 0.02 on the
#: tuning phantoms, while 0.02 is the right size for the 1000 steps of the quality bar).
DEMO_DPS_ZETA = {**DPS_ZETA, "CT 8 views": 0.05, "CT 16 views": 0.05}

#: RED-Diff settings per task (Adam lr, regularisation weight lam; inverse-SNR weighting, data weight 1,
#: pseudo-inverse initialisation except where noted), from ``experiments/tune_samplers.py`` (experiments/results/sampler_tuning.md).
RED_DIFF_SETTINGS = {
    "CT 8 views": {"lr": 0.02, "lam": 16.0},
    "CT 16 views": {"lr": 0.02, "lam": 16.0},
    "MRI 4x": {"lr": 0.02, "lam": 0.1},
    "MRI 8x": {"lr": 0.02, "lam": 0.1},
    "Inpainting 50%": {"lr": 0.02, "lam": 0.03},
    "Gaussian deblur": {"lr": 0.02, "lam": 0.03, "init": "adjoint"},  # the CG pseudo-inverse amplifies noise
    "SR 4x": {"lr": 0.02, "lam": 0.03},
}

SampleFn = Callable[[Measurement, Prior, ReconstructionTask, int, int, torch.Generator], SamplerOutput]


@dataclass(frozen=True)
class DemoSampler:
    """A sampler with the settings the demo runs it at: ``sample(m, prior, task, steps, n_samples, generator)``."""

    name: str
    default_steps: int
    sample: SampleFn


DEMO_SAMPLERS: tuple[DemoSampler, ...] = (
    DemoSampler("DPS", 100, lambda m, p, t, steps, n, g: dps(m, p, steps=steps, n_samples=n, generator=g,
                                                             zeta=DEMO_DPS_ZETA[t.name])),
    DemoSampler("PiGDM", 50, lambda m, p, t, steps, n, g: pigdm(m, p, steps=steps, n_samples=n, generator=g,
                                                                data_variance=0.16, cg_max_iter=30)),
    DemoSampler("RED-Diff", 100, lambda m, p, t, steps, n, g: red_diff(m, p, steps=steps, n_samples=n, generator=g,
                                                                       **RED_DIFF_SETTINGS[t.name])),
    DemoSampler("DDRM", 20, lambda m, p, t, steps, n, g: ddrm(m, p, steps=steps, n_samples=n, generator=g,
                                                                eta=1.0)),
)


@dataclass
class DemoReport:
    rows: list[dict] = field(default_factory=list)
    markdown: str = ""
    figures: list[Path] = field(default_factory=list)
    table: Path | None = None


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
    return device


def _scores(truth: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
    return {"psnr": psnr(truth, image), "ssim": ssim(truth, image), "nmse": nmse(truth, image)}


def _select(items: Sequence, names: Sequence[str] | None, what: str, all_names: Sequence[str]) -> list:
    if names is None:
        return list(items)
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(all_names)}")
    return [it for it, n in zip(items, all_names) if n in names]


def run_demo(
    out_dir: str | Path,
    *,
    device: str = "cpu",
    seed: int = 0,
    n_samples: int = 4,
    steps: int | None = None,
    samplers: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    prior: Prior | None = None,
    progress: bool = True,
) -> DemoReport:
    """Run every task and method and write the figures and tables into ``out_dir``.

    Args:
        seed: picks the held-out phantom (item ``seed`` of the evaluation stream) and seeds masks,
            noise and samplers.
        n_samples: posterior samples per sampler (>= 2, for the posterior std).
        steps: one step count for every sampler (default: each sampler's own, see ``DEMO_SAMPLERS``).
        samplers / tasks: subsets by name (default: all).
        prior: default: the shipped prior (:func:`invsolve.priors.default.load_default_prior`).
    """
    from tqdm.auto import tqdm

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2 (the posterior std needs two), got {n_samples!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    chosen_samplers = _select(DEMO_SAMPLERS, samplers, "sampler(s)", [s.name for s in DEMO_SAMPLERS])
    task_names = tuple(tasks) if tasks is not None else TASK_NAMES
    dev = _resolve_device(device)
    if prior is None:
        from invsolve.priors.default import load_default_prior

        prior = load_default_prior(dev)
    size = prior.shape[-1]
    lo, hi = getattr(prior, "value_range", (0.0, 1.0))
    truth = phantoms(EVALUATION_SEED, 1, size, start=seed).to(dev)
    task_list = standard_tasks(size, seed, device=dev, names=task_names)
    out_dir = Path(out_dir)
    report = DemoReport()
    bar = tqdm(total=len(task_list) * (2 + len(chosen_samplers)), desc="demo", disable=not progress)
    for k, task in enumerate(task_list):
        measurement = task.measure(truth, torch.Generator(device=dev).manual_seed(seed * 1000 + k))
        panel = TaskPanel(task.name, truth[0, 0].cpu(), task.show_measurement(measurement.y).cpu())

        def record(method: str, image: torch.Tensor, seconds: float, **extra) -> dict:
            image = image.clamp(lo, hi)
            row = {"task": task.name, "method": method, **_scores(truth[0, 0], image[0, 0]),
                   "seconds": seconds, **extra}
            report.rows.append(row)
            bar.update(1)
            return row

        for method, reconstruct in ((task.baseline_name, task.baseline),
                                    ("TV", lambda y, t=task: tv_reconstruct(t.operator, y, t.tv_weight,
                                                                            iterations=300, nonnegative=True))):
            bar.set_postfix_str(f"{task.name}: {method}")
            start = time.perf_counter()
            with torch.no_grad():
                image = reconstruct(measurement.y)
            row = record(method, image, time.perf_counter() - start)
            panel.add_reconstruction(method, image[0, 0].clamp(lo, hi).cpu(), row["psnr"])
        for sampler in chosen_samplers:
            bar.set_postfix_str(f"{task.name}: {sampler.name}")
            generator = torch.Generator(device=dev).manual_seed(seed * 1000 + k)
            start = time.perf_counter()
            out = sampler.sample(measurement, prior, task, steps or sampler.default_steps, n_samples, generator)
            seconds = time.perf_counter() - start
            samples = out.samples[:, 0].detach()  # (n_samples, 1, H, W)
            mean, std = samples.mean(dim=0), samples.std(dim=0)
            row = record(sampler.name, mean[None], seconds, nfe=out.nfe, n_samples=n_samples,
                         mean_std=float(std.mean()))
            panel.add_posterior(sampler.name, mean[0].clamp(lo, hi).cpu(), std[0].cpu(),
                                samples[0, 0].clamp(lo, hi).cpu(), row["psnr"])
        path = out_dir / f"{task.slug}.png"
        save_task_figure(panel, path)
        report.figures.append(path)
    bar.close()
    report.markdown = metrics_markdown(report.rows, size=size, seed=seed, n_samples=n_samples)
    report.table = out_dir / "metrics.md"
    write_text_atomic(report.table, report.markdown)
    write_text_atomic(out_dir / "metrics.json", json.dumps(report.rows, indent=2))
    return report


def metrics_markdown(rows: list[dict], *, size: int, seed: int, n_samples: int) -> str:
    lines = [
        f"Held-out random-ellipse phantom {size}x{size} (evaluation stream {EVALUATION_SEED}, item {seed}), "
        f"relative noise {NOISE_LEVEL}. Samplers: PSNR/SSIM/NMSE of the posterior mean of {n_samples} samples; "
        "'std' is the mean posterior standard deviation per pixel. Every image is clipped to [0, 1] and "
        "scored as in fastMRI (data range = max of the ground truth).",
        "",
        "| task | method | PSNR (dB) | SSIM | NMSE | std | NFE | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        std = f"{r['mean_std']:.4f}" if "mean_std" in r else ""
        nfe = str(r["nfe"]) if "nfe" in r else ""
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | "
                     f"{std} | {nfe} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"
