"""The main job: reconstruct a Shepp-Logan phantom from sparse-view CT and undersampled MRI.

Every task is simulated from the same ground truth with a seeded generator and
reconstructed by each available method; the result is a PNG figure (ground
truth, measurement, each reconstruction, error of the best) and a metrics table
(PSNR, SSIM, NMSE as fastMRI defines them) in markdown and JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from invsolve._atomic import atomic_path, write_text_atomic
from invsolve.baselines import tv_reconstruct
from invsolve.datasets import shepp_logan
from invsolve.measurement import Measurement
from invsolve.metrics import nmse, psnr, ssim
from invsolve.noise import GaussianNoise
from invsolve.operators import (
    LinearOperator,
    ParallelBeamCT,
    SingleCoilMRI,
    fastmri_mask,
    sparse_view_angles,
)

#: Relative measurement noise: sigma_y = NOISE_LEVEL * RMS(A x).
NOISE_LEVEL = 0.01

Reconstructor = Callable[[Measurement], torch.Tensor]


@dataclass
class Task:
    """One inverse problem of the demo: an operator, how to show its data, and its reconstructors."""

    name: str
    operator: LinearOperator
    truth: torch.Tensor  # (1, *x_shape)
    show_measurement: Callable[[torch.Tensor], torch.Tensor]
    methods: dict[str, Reconstructor]
    to_image: Callable[[torch.Tensor], torch.Tensor] = lambda x: x[0, 0]


@dataclass
class DemoReport:
    rows: list[dict] = field(default_factory=list)
    markdown: str = ""
    figure: Path | None = None
    table: Path | None = None


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    """Magnitude of a 2-channel complex image ``(1, 2, H, W)`` -> ``(H, W)``."""
    return x[0].square().sum(dim=0).sqrt()


#: TV weights per task, chosen by ``experiments/tune_tv_demo.py`` on seeded random-ellipse
#: phantoms (never on the Shepp-Logan test image); the table it printed is in experiments/results/tv_tuning.md.
TV_WEIGHTS = {"CT 8 views": 0.2, "CT 16 views": 0.2, "MRI 4x": 0.01, "MRI 8x": 0.05}


def _ct_task(truth: torch.Tensor, n_views: int, device: torch.device, tv_weights: dict[str, float]) -> Task:
    size = truth.shape[-1]
    op = ParallelBeamCT(sparse_view_angles(n_views), size, device=device)
    name = f"CT {n_views} views"
    lam = tv_weights[name]
    return Task(
        name=name,
        operator=op,
        truth=truth,
        show_measurement=lambda y: y[0, 0],
        methods={
            "FBP": lambda m: m.operator.fbp(m.y),
            "TV": lambda m: tv_reconstruct(m.operator, m.y, lam, iterations=300, nonnegative=True),
        },
    )


def _mri_task(truth: torch.Tensor, acceleration: int, seed: int, device: torch.device,
              tv_weights: dict[str, float]) -> Task:
    size = truth.shape[-1]
    complex_truth = torch.cat([truth, torch.zeros_like(truth)], dim=1)  # real-valued object, zero phase
    mask = fastmri_mask((size, size), acceleration, center_fraction=0.08 if acceleration == 4 else 0.04,
                        kind="equispaced", seed=seed)
    op = SingleCoilMRI(mask.to(device), (size, size), device=device)
    name = f"MRI {acceleration}x"
    lam = tv_weights[name]
    return Task(
        name=name,
        operator=op,
        truth=complex_truth,
        show_measurement=lambda y: torch.log1p(100 * _magnitude(y) / _magnitude(y).max()),
        methods={
            "zero-filled": lambda m: m.operator.zero_filled(m.y),
            "TV": lambda m: tv_reconstruct(m.operator, m.y, lam, iterations=300),
        },
        to_image=_magnitude,
    )


def build_tasks(truth: torch.Tensor, seed: int, device: torch.device,
                tv_weights: dict[str, float] | None = None) -> list[Task]:
    """The demo's tasks for a ground truth ``(1, 1, H, H)``."""
    weights = {**TV_WEIGHTS, **(tv_weights or {})}
    return [
        _ct_task(truth, 8, device, weights),
        _ct_task(truth, 16, device, weights),
        _mri_task(truth, 4, seed, device, weights),
        _mri_task(truth, 8, seed, device, weights),
    ]


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
    return device


def run_demo(out_dir: str | Path, *, device: str = "cpu", seed: int = 0, size: int = 128,
             progress: bool = True) -> DemoReport:
    """Run every task and method, write ``demo.png``, ``metrics.md`` and ``metrics.json`` into ``out_dir``."""
    from tqdm.auto import tqdm

    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    dev = _resolve_device(device)
    out_dir = Path(out_dir)
    tasks = build_tasks(shepp_logan(size).to(dev)[None], seed, dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    report = DemoReport()
    panels = []
    bar = tqdm(total=sum(len(t.methods) for t in tasks), desc="demo", disable=not progress)
    for task in tasks:
        clean = task.operator.A(task.truth)
        sigma_y = NOISE_LEVEL * float(clean.square().mean().sqrt())
        measurement = Measurement.simulate(task.operator, GaussianNoise(sigma_y), task.truth, generator)
        truth_img = task.to_image(task.truth).cpu()
        recons, scores = {}, {}
        for method, reconstruct in task.methods.items():
            bar.set_postfix_str(f"{task.name}: {method}")
            start = time.perf_counter()
            with torch.no_grad():
                recon = reconstruct(measurement)
            seconds = time.perf_counter() - start
            image = task.to_image(recon).cpu()
            recons[method] = image
            scores[method] = psnr(truth_img, image)
            report.rows.append({
                "task": task.name, "method": method, "psnr": scores[method],
                "ssim": ssim(truth_img, image), "nmse": nmse(truth_img, image), "seconds": seconds,
            })
            bar.update(1)
        panels.append((task, truth_img, task.show_measurement(measurement.y).cpu(), recons, scores))
    bar.close()
    report.markdown = metrics_markdown(report.rows, size=size, seed=seed)
    report.table = out_dir / "metrics.md"
    write_text_atomic(report.table, report.markdown)
    write_text_atomic(out_dir / "metrics.json", json.dumps(report.rows, indent=2))
    report.figure = out_dir / "demo.png"
    save_figure(panels, report.figure)
    return report


def metrics_markdown(rows: list[dict], *, size: int, seed: int) -> str:
    lines = [
        f"Shepp-Logan {size}x{size}, relative noise {NOISE_LEVEL}, seed {seed}. "
        "PSNR/SSIM/NMSE as in fastMRI (data range = max of the ground truth).",
        "",
        "| task | method | PSNR (dB) | SSIM | NMSE | time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nmse']:.4f} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def save_figure(panels: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = 2 + max(len(p[3]) for p in panels) + 1  # truth, measurement, methods, error
    fig, axes = plt.subplots(len(panels), n_cols, figsize=(2.4 * n_cols, 2.5 * len(panels)), squeeze=False)
    for row, (task, truth, meas, recons, scores) in enumerate(panels):
        cells = [("ground truth", truth, "gray"), ("measurement", meas, "gray")]
        cells += [(m, img, "gray") for m, img in recons.items()]
        best = max(scores, key=scores.get)
        cells.append((f"|error| {best}", (recons[best] - truth).abs(), "magma"))
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(cells):
                continue
            title, img, cmap = cells[col]
            vmax = float(truth.max()) if cmap == "gray" and col != 1 else None
            ax.imshow(img.numpy(), cmap=cmap, vmin=0 if vmax else None, vmax=vmax, aspect="auto" if col == 1 else None)
            if col >= 2 and col < len(cells) - 1:
                title = f"{title}\n{scores[title]:.1f} dB"
            ax.set_title(title, fontsize=8)
        axes[row][0].text(-0.15, 0.5, task.name, transform=axes[row][0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
