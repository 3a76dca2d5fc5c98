"""Copy a trained prior into the package and write its recipe beside it.

    python experiments/ship_prior.py --run runs/default_prior
    python experiments/ship_prior.py --run runs/slice_prior --name ellipsoid_slice_prior \
        --config experiments/configs/slice_prior_ellipsoids.json

reads ``<run>/checkpoint.pt`` (weights-only) and ``<run>/loss.csv``, copies ``<run>/prior.pt`` (the
EMA weights with their config) to ``invsolve/weights/<name>.pt`` (``--name``, default ``default_prior``)
and writes ``invsolve/weights/<name>.json``: data source, resolution, steps, seed, wall time, final loss,
the full training config and the exact command that retrains it. Runs trained from a ``--config``
file (needed for fields with no flag, e.g. ``data_options``) are shipped with that file, which is
checked to reproduce the run's config.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from invsolve._atomic import atomic_path, write_text_atomic
from invsolve.priors.edm import EDMPrior
from invsolve.training import CHECKPOINT_NAME, LOSS_LOG_NAME, PRIOR_NAME, TrainConfig, load_training_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "invsolve" / "weights"
MAX_BYTES = 20 * 2**20

# TrainConfig field -> command-line flag of experiments/train_prior.py
FLAGS = {
    "source": "--source", "data_path": "--data-path", "data_seed": "--data-seed", "init_from": "--init-from",
    "resolution": "--resolution",
    "arch": "--arch", "width": "--width", "channel_mult": "--channel-mult", "num_blocks": "--num-blocks",
    "attn_resolutions": "--attn-resolutions", "dropout": "--dropout", "sigma_data": "--sigma-data",
    "batch_size": "--batch-size", "lr": "--lr", "warmup_steps": "--warmup-steps",
    "ema_halflife_images": "--ema-halflife-images", "steps": "--steps", "checkpoint_every": "--checkpoint-every",
    "log_every": "--log-every", "seed": "--seed", "device": "--device", "max_wall_seconds": "--max-wall-seconds",
}  # fmt: skip


def command_for(config: dict, out: str) -> str:
    """The ``train_prior.py`` command that reproduces ``config`` (every option spelled out, so later
    changes of the defaults do not change what it trains)."""
    defaults = TrainConfig(out_dir="").to_dict()
    parts = ["OMP_NUM_THREADS=1", "python", "experiments/train_prior.py", "--out", out]
    for field, flag in FLAGS.items():
        value = config.get(field)
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts += [flag, text]
    unsupported = [k for k in ("data_options", "p_mean", "p_std", "sigma_min", "sigma_max", "grad_clip", "ema_rampup_ratio")
                   if config.get(k) != defaults[k]]  # fmt: skip
    if unsupported:
        raise ValueError(f"config fields {unsupported} have no command-line flag; ship with a --config file instead")
    return " ".join(parts)


DESCRIPTIONS = {
    "ellipses": ("EDM prior (Karras et al., 2022) of random 2D ellipse phantoms, 64x64, values in [0, 1]; EMA weights",
                 "invsolve.datasets.training_data.EllipsePhantoms (random_ellipses), a fresh phantom per draw"),
    "ellipsoids": ("EDM prior (Karras et al., 2022) of 2D slices of random 3D ellipsoid phantoms, values in [0, 1]; "
                   "EMA weights; the slice prior of DiffusionMBIR-style 3D reconstruction",
                   "invsolve.datasets.training_data.EllipsoidSlices (random_ellipsoids), slices of seeded volumes"),
    "brain": ("EDM prior (Karras et al., 2022) of 64x64 brain images, values in [0, 1]; EMA weights; fine-tuned from "
              "the default prior on the training split of the MNI152 brain stream",
              "invsolve.datasets.brain.BrainSlices(split='train'): nilearn's MNI152 2009 templates (T1, GM, WM) below "
              "z = 120, random plane, affine and elastic deformation, contrast and bias field, a fresh image per draw; "
              "the held-out band z >= 125 is never sampled"),
}


def command_from_config_file(config_file: Path, train_cfg: dict, out: str, steps: int) -> str:
    """``train_prior.py --config FILE`` command for a run; refused unless FILE reproduces ``train_cfg``."""
    data = json.loads(config_file.read_text())
    differ = TrainConfig.from_dict({**data, "out_dir": out}).fields_differing_from(train_cfg)
    if differ:
        raise ValueError(f"{config_file} does not reproduce the run's config; fields that differ: {differ}")
    return f"OMP_NUM_THREADS=1 python experiments/train_prior.py --config {config_file} --out {out} --steps {steps}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder")
    parser.add_argument("--name", default="default_prior", help="file stem under invsolve/weights (default: default_prior)")
    parser.add_argument("--hardware", default=f"{platform.machine()} CPU, 1 thread (OMP_NUM_THREADS=1), shared with other jobs")
    parser.add_argument("--note", action="append", default=[], help="a note to record in the recipe (repeatable)")
    parser.add_argument("--config", type=Path, help="the --config file the run was trained with (JSON)")
    args = parser.parse_args(argv)

    state = load_training_checkpoint(args.run / CHECKPOINT_NAME)
    train_cfg = dict(state["config"]["train"])
    with open(args.run / LOSS_LOG_NAME, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= state["step"]]
    prior_src = args.run / PRIOR_NAME
    prior = EDMPrior.from_checkpoint(prior_src)  # validates the file
    size = prior_src.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{prior_src} is {size / 2**20:.1f} MiB, over the 20 MiB limit for shipped weights")
    target = WEIGHTS / f"{args.name}.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(prior_src, tmp)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()

    import deepinv

    last = rows[-10:]
    out = f"runs/{args.name}"
    train_cfg["out_dir"] = out
    description, data = DESCRIPTIONS.get(train_cfg["source"], (f"EDM prior of {train_cfg['source']} data", train_cfg["source"]))
    if args.config is not None:
        command = command_from_config_file(args.config, train_cfg, out, int(state["step"]))
        original = command_from_config_file(args.config, train_cfg, out, train_cfg["steps"])
    else:
        command = command_for({**train_cfg, "steps": int(state["step"]), "max_wall_seconds": None}, out)
        original = command_for(train_cfg, out)
    recipe = {
        "description": description,
        "weights": target.name,
        "sha256": digest,
        "size_bytes": size,
        "parameters": sum(p.numel() for p in prior.denoiser.parameters()),
        "data": data,
        "source": train_cfg["source"],
        "resolution": train_cfg["resolution"],
        "seed": train_cfg["seed"],
        "steps_done": int(state["step"]),
        "steps_planned": train_cfg["steps"],
        "stopped_before_planned_steps": int(state["step"]) < train_cfg["steps"],
        "images_seen": int(state["images"]),
        "wall_seconds": round(float(state["wall_s"]), 1),
        "final_loss": float(rows[-1]["loss"]) if rows else None,
        "final_loss_mean_last_rows": round(sum(float(r["loss"]) for r in last) / len(last), 6) if last else None,
        "final_loss_note": f"EDM-weighted denoising loss; mean over the last log interval ({train_cfg['log_every']} steps) "
        f"and over the last {len(last)} intervals",
        "hardware": args.hardware,
        "torch": torch.__version__,
        "deepinv": deepinv.__version__,
        "python": platform.python_version(),
        # The run may stop before its planned steps (wall-time limit, or stopped by hand after a checkpoint);
        # the learning-rate and EMA schedules do not depend on the
        # planned total, so training for exactly the steps done reproduces it.
        "command": command,
        "original_command": original + (f" --max-wall-seconds {train_cfg['max_wall_seconds']}"
                                        if args.config is not None and train_cfg["max_wall_seconds"] else ""),
        "resume": f"rerun the same command; it continues from {out}/checkpoint.pt",
        "ship": f"python experiments/ship_prior.py --run {out}" + (f" --name {args.name}" if args.name != "default_prior" else "")
        + (f" --config {args.config}" if args.config is not None else ""),
        "notes": args.note,
        "config": train_cfg,
        "prior_config": state["config"]["prior"],
    }
    write_text_atomic(WEIGHTS / f"{args.name}.json", json.dumps(recipe, indent=2) + "\n")
    print(json.dumps({k: recipe[k] for k in ("weights", "size_bytes", "steps_done", "wall_seconds", "final_loss", "command")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
