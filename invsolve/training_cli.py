"""Command-line front end of :func:`invsolve.training.train` (``invsolve train-prior``, ``experiments/train_prior.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from invsolve.datasets.training_data import SOURCES
from invsolve.training import TrainConfig, TrainResult, TrainStep, train


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training options to ``parser`` (used by ``experiments/train_prior.py`` and the CLI)."""
    d = TrainConfig(out_dir="")
    parser.add_argument("--out", required=True, help="output folder (checkpoint, prior, loss log)")
    parser.add_argument("--config", help="JSON or YAML file with TrainConfig fields; command-line options override it")
    parser.add_argument(
        "--source", choices=SOURCES, help=f"data source (default: {d.source})"
    )
    parser.add_argument("--data-path", help="folder or file for --source nifti/fastmri")
    parser.add_argument(
        "--fastmri-mode", choices=("magnitude", "complex"), help="fastMRI slices as magnitude (1 channel) or complex (2)"
    )
    parser.add_argument("--data-seed", type=int, help="seed of procedural data (default: --seed)")
    parser.add_argument("--init-from", help="prior file or training checkpoint to start from (fine-tuning)")
    parser.add_argument("--autoencoder", help="an autoencoder folder (experiments/train_autoencoder.py): train a "
                                              "prior over its latents (--resolution = the latent size)")
    parser.add_argument("--resolution", type=int, help=f"image size (default: {d.resolution})")
    parser.add_argument("--arch", choices=("adm", "ncsnpp", "ddpmpp"), help=f"deepinv architecture (default: {d.arch})")
    parser.add_argument("--width", type=int, help=f"base channels, a multiple of 32 (default: {d.width})")
    parser.add_argument("--channel-mult", type=_ints, help="comma-separated channel multipliers (default: 1,2,2,2)")
    parser.add_argument("--num-blocks", type=int, help=f"residual blocks per resolution (default: {d.num_blocks})")
    parser.add_argument("--attn-resolutions", type=_ints, help="comma-separated resolutions with attention (default: 8)")
    parser.add_argument("--dropout", type=float, help=f"dropout (default: {d.dropout})")
    parser.add_argument("--sigma-data", type=float, help=f"data std for EDM preconditioning (default: {d.sigma_data})")
    parser.add_argument("--batch-size", type=int, help=f"batch size (default: {d.batch_size})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d.lr})")
    parser.add_argument("--warmup-steps", type=int, help=f"linear learning-rate warm-up steps (default: {d.warmup_steps})")
    parser.add_argument(
        "--ema-halflife-images", type=float, help=f"EMA half-life in images (default: {d.ema_halflife_images:g})"
    )
    parser.add_argument("--steps", type=int, help=f"total optimizer steps (default: {d.steps})")
    parser.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints (default: {d.checkpoint_every})")
    parser.add_argument("--log-every", type=int, help=f"steps between loss-log rows (default: {d.log_every})")
    parser.add_argument("--seed", type=int, help=f"seed of initialization and of every random draw (default: {d.seed})")
    parser.add_argument("--device", help=f"torch device (default: {d.device})")
    parser.add_argument("--max-wall-seconds", type=float, help="stop (with a checkpoint) after this much wall time")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if the output folder has a checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`TrainConfig` from a config file (if given) overridden by explicit command-line options."""
    data: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping of TrainConfig fields")
    data["out_dir"] = args.out
    for name in (
        "source", "data_path", "data_seed", "autoencoder", "init_from", "resolution", "arch", "width", "channel_mult", "num_blocks",
        "attn_resolutions", "dropout", "sigma_data", "batch_size", "lr", "warmup_steps", "ema_halflife_images",
        "steps", "checkpoint_every", "log_every", "seed", "device", "max_wall_seconds",
    ):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.fastmri_mode is not None:
        data["data_options"] = {**data.get("data_options", {}), "mode": args.fastmri_mode}
    if args.no_resume:
        data["resume"] = False
    return TrainConfig.from_dict(data)


def run_from_args(args: argparse.Namespace) -> TrainResult:
    """Train with a tqdm progress bar (unless ``args.quiet``); the command-line front end."""
    config = config_from_args(args)
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="train", unit="step", dynamic_ncols=True)

    def progress(info: TrainStep) -> None:
        if bar is not None:
            if bar.n == 0 and info.step > 1:
                bar.update(info.step - 1)  # resumed run
            bar.update(1)
            bar.set_postfix(loss=f"{info.loss:.4f}", lr=f"{info.lr:.2g}")

    try:
        return train(config, callback=progress)
    finally:
        if bar is not None:
            bar.close()

