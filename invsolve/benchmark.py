"""``invsolve benchmark``: samplers on held-out phantoms, quality with confidence intervals and cost ratios.

For each named task (:mod:`invsolve.tasks`) and method, ``n_phantoms`` phantoms of the held-out
evaluation stream are measured and reconstructed with the default prior through the one entry point, with
the seeds a study would use (:class:`invsolve.study.runner.CaseRunner`). Reported per task and method: PSNR and SSIM of the
posterior mean (mean and 95% CI over phantoms), NFE, seconds per reconstruction, and
``time / bare network time``: the sampler's time over the time of the same number of plain
network evaluations at the same batch size, measured in the same run (so machine speed cancels;
gradient-guided samplers are near 3 because of the backward pass).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from invsolve._atomic import write_text_atomic
from invsolve.pipeline.items import list_items
from invsolve.pipeline.methods import parse_method_spec
from invsolve.samplers.declaration import declaration
from invsolve.study.cases import Case
from invsolve.study.config import DatasetSpec, PriorSpec
from invsolve.study.report import mean_ci
from invsolve.study.runner import CaseRunner
from invsolve.tasks import TASKS, task_spec


@dataclass
class BenchmarkResult:
    rows: list[dict]
    markdown: str


def bare_network_seconds(prior, batch: int, calls: int, device: torch.device) -> float:
    """Seconds for ``calls`` plain denoiser evaluations on a batch of ``batch`` (no autograd)."""
    x = torch.randn(batch, *prior.shape, generator=torch.Generator().manual_seed(0)).to(device)
    sigmas = torch.logspace(-2, 1.5, max(calls, 1)).tolist()
    with torch.no_grad():
        prior.denoise(x, sigmas[0])  # warm-up
        start = time.perf_counter()
        for s in sigmas[:calls]:
            prior.denoise(x, s)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run_benchmark(*, tasks: Sequence[str] | None = None, samplers: Sequence[str] | None = None, n_phantoms: int = 4,
                  steps: int | None = None, samples: int = 2, seed: int = 0, device: str = "cpu",
                  out: str | Path | None = None, overwrite: bool = False, progress: bool = True) -> BenchmarkResult:
    from tqdm.auto import tqdm

    tasks = list(tasks or ["MRI 4x"])
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"output {out} exists; pass --overwrite to replace it")
    if isinstance(n_phantoms, bool) or not isinstance(n_phantoms, int) or n_phantoms < 1:
        raise ValueError(f"n_phantoms must be a positive integer, got {n_phantoms!r}")
    methods = [parse_method_spec(s, steps=steps, samples=samples) for s in (samplers or ["dps", "red-diff"])]
    dataset = DatasetSpec("phantoms", (("count", n_phantoms),))
    operators = [task_spec(t) for t in tasks]
    dev = torch.device(device)
    runner = CaseRunner(dataset, dev)
    prior_spec = PriorSpec("default")
    cases = [Case(item, op, prior_spec, m, seed) for op in operators for m in methods
             for item in list_items(dataset)]
    records = [runner.run(c)[0] for c in tqdm(cases, desc="benchmark", disable=not progress)]
    prior = runner.prior(prior_spec)
    rows = []
    for task, op in zip(tasks, operators):
        for m in methods:
            rs = [r for r, c in zip(records, cases) if c.operator == op and c.method == m]
            seconds = sum(r["seconds"] for r in rs) / len(rs)
            row = {"task": task, "method": m.label, "psnr": mean_ci([r["psnr"] for r in rs]),
                   "ssim": mean_ci([r["ssim"] for r in rs]), "nfe": rs[0]["nfe"], "seconds": seconds}
            if rs[0]["nfe"]:
                bare = bare_network_seconds(prior, m.samples, rs[0]["nfe"], dev)
                row["ratio"] = seconds / bare
            rows.append(row)
    default_steps = {m.name: declaration(m.name).default_steps for m in methods if not m.is_classical}
    lines = [f"Held-out phantoms: {n_phantoms} per task, default prior, seed {seed}, device {device}, "
             f"{torch.get_num_threads()} threads. Default steps: {default_steps}.", "",
             "| task | method | PSNR (dB) | SSIM | NFE | s / recon | time / bare network time |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']} | {r['ssim']} | {r['nfe']} | "
                     f"{r['seconds']:.2f} | {ratio} |")
    markdown = "\n".join(lines) + "\n"
    if out is not None:
        write_text_atomic(out, markdown)
    return BenchmarkResult(rows, markdown)
