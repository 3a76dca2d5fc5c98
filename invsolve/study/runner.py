"""Run a study: every case once, resumable, sharded across ``torchrun`` processes, then one merged report.

Output folder (every file written atomically: a temporary file, then a rename)::

    config.yaml        the config as given, and its canonical form
    manifest.json      fingerprint of the config, versions, machine, seeds policy, case count, times
    cases/<id>.json    one record per finished case (written last: its presence means "done")
    cases/<id>.lock    held while a process computes the case (:mod:`invsolve.study.locks`): concurrent runs on
                       one folder compute each case once
    cases/<id>.npz     mean, std and truth of the case, in the data's units
    figures/<id>.png   truth, posterior mean, std and error of the case (``figures: true``)
    logs/rank<r>.jsonl what each process started and finished (proves each case ran exactly once)
    results.csv/.md    one row per case, in case order; summary.md and figures/summary.png
    volumes.csv/.md    per-volume metrics exactly as ``fastmri.evaluate`` computes them
    submission/<run>/  fastMRI datasets: reconstructions in the submission layout, ``targets/`` the
                       matching ground truth, so ``python -m fastmri.evaluate`` scores a run directly
    volumes/<run>/     NIfTI datasets: reconstructed volumes (mean and std) with the input's header

A rerun with the same config skips the cases whose record exists and rebuilds the merged files from
all records, so an interruption loses at most the cases in flight and no row is ever duplicated.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invsolve._atomic import atomic_path, write_text_atomic
from invsolve.metrics import nmse, psnr, ssim
from invsolve.pipeline.methods import run_method
from invsolve.pipeline.problems import Problem, ProblemCache, item_problem
from invsolve.study.cases import Case, enumerate_cases, shard
from invsolve.study.config import DatasetSpec, PriorSpec, StudyConfig, load_config
from invsolve.study.distributed import Workers, join
from invsolve.study.locks import try_lock, unlock

#: How often a run checks on cases that another process is computing.
LOCK_POLL_SECONDS = 0.5
#: Held while a run creates or checks the output folder.
PREPARE_LOCK = ".prepare.lock"
#: Entries the runner creates (and removes on ``overwrite``); nothing else in the folder is touched.
MANAGED = ("config.yaml", "manifest.json", "cases", "figures", "logs", "results.csv", "results.md", "summary.md",
           "volumes.csv", "volumes.md", "submission", "volumes")


@dataclass
class StudyReport:
    out_dir: Path
    n_cases: int
    ran: int
    skipped: int
    rows: list[dict]


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that shape the results."""
    import importlib.metadata as md

    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("invsolve", "torch", "deepinv", "fastmri", "numpy", "scipy", "scikit-image", "nibabel", "h5py"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "not installed"
    return found


def prepare_output(out: Path, config: StudyConfig, *, overwrite: bool, n_cases: int, world_size: int) -> None:
    """Create or reuse ``out``: resume the same study, refuse anything else unless ``overwrite``.

    Runs started together on one folder prepare it one at a time (a lock in the folder), so the second sees the
    first's manifest and resumes the same study.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = out / PREPARE_LOCK
    while not try_lock(lock):
        time.sleep(LOCK_POLL_SECONDS)
    try:
        _prepare_output(out, config, overwrite=overwrite, n_cases=n_cases, world_size=world_size)
    finally:
        unlock(lock)


def _stored_manifest(out: Path, config: StudyConfig) -> dict:
    """The study folder's manifest; a damaged one is recovered from ``config.yaml`` when that names this config."""
    manifest_path = out / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        if isinstance(manifest, dict):
            return manifest
        problem = "it does not hold a mapping"
    except ValueError as err:
        problem = f"{type(err).__name__}: {err}"
    try:
        import yaml

        stored = yaml.safe_load((out / "config.yaml").read_text())
        same = isinstance(stored, dict) and stored.get("canonical") == config.canonical()
    except (OSError, ValueError, yaml.YAMLError):
        same = False
    if same:  # the same study: its manifest is rewritten, its finished cases are kept
        return {"fingerprint": config.fingerprint}
    raise ValueError(f"{manifest_path} is damaged ({problem}) and {out / 'config.yaml'} does not name this config; "
                     "pass --overwrite to start the study afresh in this folder, or choose another folder")


def _prepare_output(out: Path, config: StudyConfig, *, overwrite: bool, n_cases: int, world_size: int) -> None:
    manifest_path = out / "manifest.json"
    old: dict = {}
    if manifest_path.is_file():
        try:
            old = _stored_manifest(out, config)
        except ValueError:
            if not overwrite:
                raise
            old = {"fingerprint": None}  # damaged and not this config's: replaced below
        if old.get("fingerprint") != config.fingerprint:
            if not overwrite:
                raise FileExistsError(
                    f"{out} holds a study with a different config (fingerprint {old.get('fingerprint')} vs "
                    f"{config.fingerprint}); pass --overwrite to replace it or choose another output folder")
            for name in MANAGED:
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    elif any(not p.name.startswith(".") for p in out.iterdir()) and not overwrite:  # hidden: our lock and temps
        raise FileExistsError(f"output folder {out} exists, is not empty and is not a study folder; "
                              "pass --overwrite to write the study into it anyway")
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    write_text_atomic(out / "config.yaml", yaml.safe_dump(
        {"config": dict(config.raw), "canonical": config.canonical()}, sort_keys=False))
    manifest = {"fingerprint": config.fingerprint, "name": config.name, "n_cases": n_cases,
                "world_size": world_size, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": versions(),
                "seeds": {"config_seeds": list(config.seeds),
                          "policy": "mask_seed = seed; noise and sampler seeds hash the case identity "
                                    "(see invsolve.study.cases); each case record lists its three seeds"}}
    manifest["first_started"] = old.get("first_started", manifest["started"])
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2))


def load_prior(spec: PriorSpec, device: torch.device):
    """A shipped prior by name (``spec.path`` None), or a prior file written by ``invsolve train-prior``."""
    from invsolve.priors.default import load_shipped_prior
    from invsolve.priors.edm import EDMPrior

    return load_shipped_prior(spec.name, device) if spec.path is None else EDMPrior.from_checkpoint(spec.path,
                                                                                                     device=device)


class CaseRunner:
    """Runs cases, keeping the priors, the last problem and the setups it shares (consecutive cases share them)."""

    def __init__(self, dataset: DatasetSpec, device: torch.device) -> None:
        self.dataset, self.device = dataset, device
        self._priors: dict[PriorSpec, Any] = {}
        self._problem: tuple[tuple, Problem, dict] | None = None
        self._cache = ProblemCache()

    def prior(self, spec: PriorSpec):
        if spec not in self._priors:
            self._priors[spec] = load_prior(spec, self.device)
        return self._priors[spec]

    def problem(self, case: Case, size: int) -> tuple[Problem, dict]:
        key = (case.problem_key, size)
        if self._problem is None or self._problem[0] != key:
            dataset = self.dataset
            problem, geometry = item_problem(
                case.item, case.operator, size, mask_seed=case.mask_seed, noise_seed=case.noise_seed,
                device=self.device, resize=dataset.get("resize", "none"), plane=dataset.get("plane", "axial"),
                percentiles=tuple(dataset.get("percentiles", (0.5, 99.5))), cache=self._cache)
            self._problem = (key, problem, geometry)
        return self._problem[1], self._problem[2]

    def run(self, case: Case) -> tuple[dict, dict[str, np.ndarray]]:
        prior = self.prior(case.prior)
        problem, geometry = self.problem(case, getattr(prior, "image_shape", prior.shape)[-1])
        generator = torch.Generator(device=self.device).manual_seed(case.sampler_seed)
        result = run_method(case.method, problem, prior, generator=generator, prior_name=case.prior.name)
        truth = problem.truth[0, 0].detach().cpu().double()
        mean = result.mean[0, 0].detach().cpu().double()
        std = result.std[0, 0].detach().cpu().double()
        record = {
            "case_id": case.case_id, "dataset": case.item.kind, "item": case.item.name, "group": case.item.group,
            "path": case.item.path,
            "slice": case.item.index, "volume": case.item.volume, "operator": case.operator.label,
            "operator_spec": case.operator.text, "prior": case.prior.name, "method": case.method.label,
            "sampler": case.method.name, "seed": case.seed, "mask_seed": case.mask_seed,
            "noise_seed": case.noise_seed, "sampler_seed": case.sampler_seed,
            **scores(truth, mean), "mean_std": float(std.mean()), "nfe": result.nfe,
            "seconds": round(result.seconds, 3),
            "scale": problem.scale, **{k: float(v) for k, v in problem.info.items()}, **geometry,
            **{k: v for k, v in result.diagnostics.items() if k in ("acquisition_order", "selection_seconds",
                                                               "measurement_update_seconds")},
            **({"settings_source": result.settings_source} if result.settings_source else {}),
        }
        arrays = {name: (a * problem.scale).float().numpy() for name, a in
                  (("mean", mean), ("std", std), ("truth", truth))}
        return record, arrays


def scores(truth, image) -> dict[str, float]:
    """PSNR, SSIM and NMSE of ``image`` against ``truth`` as fastMRI defines them."""
    return {"psnr": psnr(truth, image), "ssim": ssim(truth, image), "nmse": nmse(truth, image)}


def _log(path: Path, event: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()


def case_is_complete(out: Path, case_id: str, log: Path | None = None) -> bool:
    """Whether ``cases/<case_id>.json`` and its ``.npz`` are both there and readable.

    A damaged case (a truncated or foreign record, an arrays file missing or unreadable; a crash or a full disk
    outside our atomic writes, or a hand edit) is removed, logged and reported as not done, so it is computed again.
    """
    record_path, arrays_path = out / "cases" / f"{case_id}.json", out / "cases" / f"{case_id}.npz"
    if not record_path.is_file():
        return False
    problem = None
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict) or record.get("case_id") != case_id:
            problem = "its record is not this case's"
        else:
            with np.load(arrays_path) as arrays:
                arrays.files  # reads the archive's directory
    except FileNotFoundError:
        problem = f"{arrays_path.name} is missing"
    except (ValueError, OSError, zipfile.BadZipFile) as err:  # json.JSONDecodeError is a ValueError
        problem = f"unreadable ({type(err).__name__}: {err})"
    if problem is None:
        return True
    record_path.unlink(missing_ok=True)
    arrays_path.unlink(missing_ok=True)
    if log is not None:
        _log(log, {"event": "repair", "case_id": case_id, "problem": problem, "time": time.time()})
    return False


def _save_case(out: Path, record: dict, arrays: dict[str, np.ndarray], figure: bool) -> None:
    with atomic_path(out / "cases" / f"{record['case_id']}.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    if figure:
        from invsolve.study.report import case_figure

        case_figure(out / "figures" / f"{record['case_id']}.png", record, arrays)
    write_text_atomic(out / "cases" / f"{record['case_id']}.json", json.dumps(record, indent=1))


def run_study(config: StudyConfig | str | Path, out_dir: str | Path, *, overwrite: bool = False,
              device: str | None = None, progress: bool = True, workers: Workers | None = None,
              on_case: Callable[[Case], None] | None = None) -> StudyReport:
    """Run (or resume) a study into ``out_dir``; under ``torchrun`` each process runs its share.

    Args:
        config: a :class:`StudyConfig` or the path of a YAML config.
        overwrite: replace a study with a different config in ``out_dir`` (otherwise an error).
        device: overrides the config's device (``cuda`` = this process's GPU).
        on_case: called before each case runs (progress hooks, tests).
    """
    from tqdm.auto import tqdm

    if not isinstance(config, StudyConfig):
        config = load_config(config)
    out = Path(out_dir)
    workers = workers or join()
    try:
        dev = workers.device(device or config.device)
        cases = enumerate_cases(config)
        runner = CaseRunner(config.dataset, dev)
        for prior in config.priors:  # a refused prior file ends the study before anything is written
            runner.prior(prior)
        if workers.is_main:
            prepare_output(out, config, overwrite=overwrite, n_cases=len(cases), world_size=workers.world_size)
        workers.barrier()
        (out / "logs").mkdir(exist_ok=True)
        log = out / "logs" / f"rank{workers.rank}.jsonl"
        ran, skipped = 0, 0
        mine = shard(cases, workers.rank, workers.world_size)
        bar = tqdm(mine, desc=f"study (rank {workers.rank})" if workers.world_size > 1 else "study",
                   disable=not progress, position=workers.rank)
        def done(case: Case) -> bool:
            return case_is_complete(out, case.case_id, log)

        def compute(case: Case) -> bool:
            """Run ``case`` under its lock; False when another live process holds it."""
            lock = out / "cases" / f"{case.case_id}.lock"
            if not try_lock(lock):
                return False
            try:
                if done(case):  # finished by another process between our check and the lock
                    return True
                if on_case is not None:
                    on_case(case)
                bar.set_postfix_str(f"{case.item.name} {case.method.name}")
                _log(log, {"event": "start", "case_id": case.case_id, "rank": workers.rank, "time": time.time()})
                record, arrays = runner.run(case)
                record["rank"] = workers.rank
                _save_case(out, record, arrays, config.figures)
                _log(log, {"event": "finish", "case_id": case.case_id, "rank": workers.rank, "time": time.time()})
            finally:
                unlock(lock)
            return True

        (out / "cases").mkdir(exist_ok=True)
        elsewhere: list[Case] = []  # locked by another process: come back to them at the end
        for case in bar:
            if done(case):
                skipped += 1
            elif compute(case):
                ran += 1
            else:
                elsewhere.append(case)
        while elsewhere:  # wait for the other process, or take over a case it failed on or died in
            for case in list(elsewhere):
                if done(case):
                    elsewhere.remove(case)
                    skipped += 1
                elif compute(case):
                    elsewhere.remove(case)
                    ran += 1
            if elsewhere:
                time.sleep(LOCK_POLL_SECONDS)
        bar.close()
        workers.barrier()
        rows: list[dict] = []
        if workers.is_main:
            from invsolve.study.report import write_report

            rows = write_report(out, config, cases)
        workers.barrier()
        return StudyReport(out, len(cases), ran, skipped, rows)
    finally:
        workers.close()
