"""The main job: reconstruct a held-out brain slice (or phantom) with every posterior sampler on a shipped prior.

For each of the demo's tasks (default :data:`DEMO_TASK_NAMES`: sparse-view CT with 8 views, MRI at 4x, 50%
inpainting; any standard task of :mod:`invsolve.tasks` on request) a 64x64 brain slice of the MNI152 band that the brain prior never saw (``data="brain"``,
the default; :mod:`invsolve.datasets.brain`) or a random-ellipse phantom that the default prior never saw
(``data="ellipses"``) is measured with 1% noise
and reconstructed by the classical baseline (FBP / zero-filled / masked image), tuned TV, and
each sampler (DPS, PiGDM, RED-Diff, DDRM) drawing ``n_samples`` posterior samples. Every reconstruction is
clipped to the data range ``[0, 1]`` before it is scored (PSNR, SSIM, NMSE as fastMRI defines
them). Outputs, all written atomically: one figure per task (ground truth, measurement, baseline,
TV, then per sampler the posterior mean, the posterior std, the error of the mean and one
sample), ``metrics.md`` and ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from invsolve._atomic import write_text_atomic
from invsolve._validation import require_device
from invsolve.demo_figures import TaskPanel, save_task_figure
from invsolve.pipeline.methods import MethodSpec, demo_samplers, run_method
from invsolve.pipeline.problems import measured_problem
from invsolve.priors.base import Prior
from invsolve.study.runner import scores
from invsolve.tasks import EVALUATION_SEED, NOISE_LEVEL, phantoms, standard_tasks


#: The demo's data and the shipped prior each uses.
DEMO_DATA = {"ellipses": "default", "brain": "brain"}
#: The tasks the demo runs by default: one per modality, so that it stays within 5 minutes on 2 CPU cores
#: (the other standard tasks, CT 16 views and MRI 8x, are one ``tasks=`` away).
DEMO_TASK_NAMES = ("CT 8 views", "MRI 4x", "Inpainting 50%")
#: Posterior samples per sampler by default (the fewest that still give a per-pixel spread beside the mean).
DEMO_SAMPLES = 3


@dataclass
class DemoReport:
    rows: list[dict] = field(default_factory=list)
    markdown: str = ""
    figures: list[Path] = field(default_factory=list)
    table: Path | None = None


def _select(names: Sequence[str] | None, what: str, all_names: Sequence[str]) -> list[str]:
    if names is None:
        return list(all_names)
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(all_names)}")
    return [n for n in all_names if n in names]


def run_demo(
    out_dir: str | Path,
    *,
    device: str = "cpu",
    seed: int = 0,
    n_samples: int = DEMO_SAMPLES,
    steps: int | None = None,
    samplers: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    prior: Prior | None = None,
    data: str = "brain",
    precision: str = "float32",
    progress: bool = True,
) -> DemoReport:
    """Run the demo's tasks (default :data:`DEMO_TASK_NAMES`) with every method; write figures and tables into ``out_dir``.

    Args:
        seed: picks the held-out phantom (item ``seed`` of the evaluation stream) and seeds masks,
            noise and samplers.
        n_samples: posterior samples per sampler (>= 2, for the posterior std).
        steps: one step count for every sampler (default: each sampler's declared default steps).
        samplers / tasks: subsets by label (``DPS``, ...) and task name (default: every sampler, the tasks of
            :data:`DEMO_TASK_NAMES`; any of :data:`invsolve.tasks.TASK_NAMES` may be asked for).
        prior: default: the shipped prior of the data (``ellipses``: the default prior; ``brain``: the brain prior).
        data: ``"ellipses"`` (a held-out random-ellipse phantom) or ``"brain"`` (a held-out brain slice of the
            MNI152 band never used in training, :mod:`invsolve.datasets.brain`).
        precision: the network's precision (``"bfloat16"`` / ``"float16"``: autocast of the network only, data
            consistency stays in float32; :mod:`invsolve.priors.execution`), for priors that offer it.
    """
    from tqdm.auto import tqdm

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2 (the posterior std needs two), got {n_samples!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    available = demo_samplers()
    labels = _select(samplers, "sampler(s)", [d.label for d in available])
    chosen_samplers = [d for d in available if d.label in labels]
    task_names = tuple(tasks) if tasks is not None else DEMO_TASK_NAMES
    dev = require_device(device)
    if data not in DEMO_DATA:
        raise ValueError(f"data must be one of {list(DEMO_DATA)}, got {data!r}")
    prior_name = DEMO_DATA[data] if prior is None else "given"
    if prior is None:
        from invsolve.priors.default import load_shipped_prior

        prior = load_shipped_prior(prior_name, dev)
    if precision != "float32":
        if not hasattr(prior, "with_execution"):
            raise ValueError(f"precision={precision!r} needs a prior with execution options (an EDMPrior), got "
                             f"{type(prior).__name__}")
        prior = prior.with_execution(precision=precision)
    size = prior.shape[-1]
    lo, hi = getattr(prior, "value_range", (0.0, 1.0))
    truth = demo_truth(data, size, seed).to(dev)
    setups = standard_tasks(size, seed, device=dev, names=task_names)
    out_dir = Path(out_dir)
    report = DemoReport()
    bar = tqdm(total=len(setups) * (2 + len(chosen_samplers)), desc="demo", disable=not progress)
    for k, setup in enumerate(setups):
        problem = measured_problem(setup, truth, noise_seed=seed * 1000 + k)
        panel = TaskPanel(setup.label, truth[0, 0].cpu(), setup.show_measurement(problem.measurement.y).cpu())
        methods = [(setup.baseline_name, MethodSpec("baseline", samples=1)), ("TV", MethodSpec("tv", samples=1))]
        methods += [(d.label, MethodSpec(d.name, steps or d.default_steps, n_samples)) for d in chosen_samplers]
        for label, method in methods:
            bar.set_postfix_str(f"{setup.label}: {label}")
            generator = torch.Generator(device=dev).manual_seed(seed * 1000 + k)
            result = run_method(method, problem, prior, generator=generator, prior_name=prior_name)
            mean = result.mean.clamp(lo, hi)
            row = {"task": setup.label, "method": label, **scores(truth[0, 0], mean[0, 0]),
                   "seconds": result.seconds}
            if method.is_classical:
                panel.add_reconstruction(label, mean[0, 0].cpu(), row["psnr"])
            else:
                row.update(nfe=result.nfe, n_samples=n_samples, mean_std=float(result.std.mean()))
                panel.add_posterior(label, mean[0, 0].cpu(), result.std[0, 0].cpu(),
                                    result.sample[0, 0].clamp(lo, hi).cpu(), row["psnr"])
            report.rows.append(row)
            bar.update(1)
        path = out_dir / f"{setup.slug}.png"
        save_task_figure(panel, path)
        report.figures.append(path)
    bar.close()
    report.markdown = metrics_markdown(report.rows, size=size, seed=seed, n_samples=n_samples, data=data)
    report.table = out_dir / "metrics.md"
    write_text_atomic(report.table, report.markdown)
    write_text_atomic(out_dir / "metrics.json", json.dumps(report.rows, indent=2))
    return report


def demo_truth(data: str, size: int, seed: int) -> torch.Tensor:
    """The held-out image ``(1, 1, size, size)`` of the demo: item ``seed`` of the evaluation stream of ``data``."""
    if data == "brain":
        from invsolve.datasets.brain import BrainSlices

        return BrainSlices(size, split="heldout", seed=0)[seed][None]
    return phantoms(EVALUATION_SEED, 1, size, start=seed)


def metrics_markdown(rows: list[dict], *, size: int, seed: int, n_samples: int, data: str = "ellipses") -> str:
    what = (f"Held-out brain slice {size}x{size} (MNI152 band z >= 125, never used in training; held-out stream item "
            f"{seed})" if data == "brain" else
            f"Held-out random-ellipse phantom {size}x{size} (evaluation stream {EVALUATION_SEED}, item {seed})")
    lines = [
        f"{what}, "
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
