"""The demo's per-task figure: the data and classical reconstructions on top, one row per sampler below."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from invsolve._atomic import atomic_path


@dataclass
class TaskPanel:
    """Everything one task's figure shows (2-D CPU tensors)."""

    task: str
    truth: torch.Tensor
    measurement: torch.Tensor
    reconstructions: list[tuple[str, torch.Tensor, float]] = field(default_factory=list)
    posteriors: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float]] = field(default_factory=list)

    def add_reconstruction(self, method: str, image: torch.Tensor, psnr: float) -> None:
        self.reconstructions.append((method, image, psnr))

    def add_posterior(self, sampler: str, mean: torch.Tensor, std: torch.Tensor, sample: torch.Tensor,
                      psnr: float) -> None:
        self.posteriors.append((sampler, mean, std, sample, psnr))


def save_task_figure(panel: TaskPanel, path: Path) -> None:
    """Write ``panel`` as a PNG at ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(4, 2 + len(panel.reconstructions))
    n_rows = 1 + len(panel.posteriors)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.35 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    vmax = float(panel.truth.max())

    def show(ax, image, title, cmap="gray", vmin=0.0, top=vmax, aspect=None):
        ax.imshow(image.numpy(), cmap=cmap, vmin=vmin, vmax=top, aspect=aspect)
        ax.set_title(title, fontsize=8)

    show(axes[0, 0], panel.truth, "ground truth")
    show(axes[0, 1], panel.measurement, "measurement", vmin=None, top=None, aspect="auto")
    for col, (method, image, score) in enumerate(panel.reconstructions, start=2):
        show(axes[0, col], image, f"{method}\n{score:.1f} dB")
    std_top = max((float(p[2].max()) for p in panel.posteriors), default=1.0) or 1.0
    for row, (sampler, mean, std, sample, score) in enumerate(panel.posteriors, start=1):
        show(axes[row, 0], mean, f"{sampler} posterior mean\n{score:.1f} dB")
        show(axes[row, 1], std, f"{sampler} posterior std", cmap="magma", top=std_top)
        show(axes[row, 2], (mean - panel.truth).abs(), f"{sampler} |mean - truth|", cmap="magma", top=0.5 * vmax)
        show(axes[row, 3], sample, f"{sampler} one sample")
    fig.suptitle(panel.task, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
