"""Training an EDM diffusion prior (Karras et al., 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models").

Per step: draw clean images ``x0`` from a :mod:`invsolve.datasets.training_data` source, noise
levels ``ln sigma ~ N(P_mean, P_std^2)`` (section 5, "Training"), noise ``n ~ N(0, I)``, and minimize
the weighted denoising loss ``lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2`` with
``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (eq. 2 and Table 1), with Adam and a
linear learning-rate warm-up. An exponential moving average (EMA) of the weights is kept with the
half-life-in-images rule of the EDM training setup (Appendix F.1: half-life capped at
``ema_rampup_ratio`` times the images seen so far); the EMA weights are what the exported prior uses.

Every random draw (batch indices, sigmas, noise) comes from one seeded ``torch.Generator``;
checkpoints hold the model, EMA, optimizer, step, that generator's state and torch's global RNG
states (used by dropout), so an interrupted run resumed from its checkpoint continues bit for bit.
Checkpoints and the exported prior are written atomically. Progress goes to an optional callback
(the command line shows a tqdm bar); nothing is printed here.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from invsolve._atomic import atomic_path, write_text_atomic
from invsolve.priors.edm import PRIOR_FORMAT, TRAIN_FORMAT, EDMDenoiser, EDMPrior, edm_loss_weight, make_edm_prior

CHECKPOINT_NAME = "checkpoint.pt"
PRIOR_NAME = "prior.pt"
LOSS_LOG_NAME = "loss.csv"
CONFIG_NAME = "config.json"
LOSS_LOG_FIELDS = ("step", "images", "loss", "lr", "wall_s")

# Config fields that may change when a run is resumed (they do not change what a step computes).
_RESUMABLE_CHANGES = frozenset({"out_dir", "steps", "checkpoint_every", "log_every", "max_wall_seconds", "device", "resume"})


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able; saved in every checkpoint).

    Data: ``source`` is ``"ellipses"``, ``"ellipsoids"``, ``"brain"``, ``"brain-volumes"``, ``"nifti"`` or ``"fastmri"`` (see
    :func:`invsolve.datasets.training_data.build_training_data`); ``data_path`` is the folder or file
    of file sources; ``data_options`` are passed to the dataset (e.g. ``{"mode": "complex"}``);
    ``data_seed`` seeds procedural sources (defaults to ``seed``). ``autoencoder``: a folder of
    ``experiments/train_autoencoder.py``; the prior then models the images' latents (``resolution`` = the latent
    size) and, with the autoencoder, makes a latent prior (:func:`invsolve.priors.latent.load_latent_prior`).
    Network: see :func:`invsolve.priors.edm.build_network`. ``init_from``: a prior file (or training
    checkpoint) whose weights start both the network and its EMA (fine-tuning, e.g. a slice prior for
    3D volumes from the 2D default prior); its network and ``sigma_data`` must match this config.
    """

    out_dir: str
    source: str = "ellipses"
    data_path: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    data_seed: int | None = None
    autoencoder: str | None = None
    init_from: str | None = None
    resolution: int = 64
    arch: str = "adm"
    width: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    num_blocks: int = 1
    attn_resolutions: list[int] = field(default_factory=lambda: [8])
    dropout: float = 0.0
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    batch_size: int = 16
    lr: float = 2e-4
    warmup_steps: int = 200
    grad_clip: float | None = None
    ema_halflife_images: float = 5000.0
    ema_rampup_ratio: float | None = 0.05
    steps: int = 1000
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    max_wall_seconds: float | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        self.channel_mult = [int(m) for m in self.channel_mult]
        self.attn_resolutions = [int(r) for r in self.attn_resolutions]
        self.data_options = dict(self.data_options)
        positive_ints = ("resolution", "width", "num_blocks", "batch_size", "steps", "checkpoint_every", "log_every")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        for name in ("sigma_data", "p_std", "lr", "sigma_min", "sigma_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.ema_halflife_images < 0:
            raise ValueError(f"ema_halflife_images must be >= 0, got {self.ema_halflife_images}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.max_wall_seconds is not None and not self.max_wall_seconds > 0:
            raise ValueError(f"max_wall_seconds must be positive or None, got {self.max_wall_seconds}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be an integer in [0, 2**31), got {self.seed!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fields_differing_from(self, saved: dict[str, Any]) -> list[str]:
        """Fields that differ from a saved config and change what a step computes (resumable ones excluded)."""
        return sorted(k for k, v in self.to_dict().items() if k not in _RESUMABLE_CHANGES and saved.get(k) != v)

    def prior_config(self, channels: int, value_range: tuple[float, float]) -> dict[str, Any]:
        """The config of the prior this run trains (network, sigma_data, sigma range, value range, provenance)."""
        return {
            "arch": self.arch,
            "channels": channels,
            "resolution": self.resolution,
            "width": self.width,
            "channel_mult": list(self.channel_mult),
            "num_blocks": self.num_blocks,
            "attn_resolutions": list(self.attn_resolutions),
            "dropout": self.dropout,
            "sigma_data": self.sigma_data,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "value_range": list(value_range),
            "source": self.source,
        }


@dataclass(frozen=True)
class TrainStep:
    """What the progress callback receives after every optimizer step."""

    step: int
    steps: int
    loss: float
    lr: float
    checkpoint: Path | None  # set when a checkpoint was written at this step


@dataclass(frozen=True)
class TrainResult:
    step: int
    checkpoint: Path
    prior: Path
    loss_log: Path
    final_loss: float  # mean loss over the last logged interval
    wall_seconds: float  # training time over all sessions of this run
    stopped_early: bool  # True when max_wall_seconds ended the run before ``steps``


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, source: torch.nn.Module, beta: float) -> None:
        for ema_p, p in zip(self.module.parameters(), source.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - beta)
        for ema_b, b in zip(self.module.buffers(), source.buffers(), strict=True):
            ema_b.copy_(b)


def ema_beta(config: TrainConfig, images_seen: int) -> float:
    """EMA decay per step from a half-life in images, capped at ``rampup_ratio * images_seen`` (EDM, App. F.1)."""
    halflife = config.ema_halflife_images
    if config.ema_rampup_ratio is not None:
        halflife = min(halflife, images_seen * config.ema_rampup_ratio)
    return 0.5 ** (config.batch_size / max(halflife, 1e-8))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant (``step`` counts from 0)."""
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


def _dataset(config: TrainConfig):
    from invsolve.datasets.training_data import build_training_data

    seed = config.seed if config.data_seed is None else config.data_seed
    if config.autoencoder is None:
        return build_training_data(config.source, config.resolution, seed=seed, path=config.data_path,
                                   **config.data_options)
    from invsolve.priors.latent import AutoencoderFiles, EncodedImages

    autoencoder = AutoencoderFiles(config.autoencoder)
    if autoencoder.latent_shape[1] != config.resolution:
        raise ValueError(f"resolution {config.resolution} must be the autoencoder's latent size "
                         f"{autoencoder.latent_shape[1]} (a latent prior models its latents)")
    images = build_training_data(config.source, autoencoder.image_size, seed=seed, path=config.data_path,
                                 **config.data_options)
    return EncodedImages(images, autoencoder)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_loss_log(path: Path, upto_step: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto_step]


def _rewrite_loss_log(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOSS_LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint, read with ``torch.load(weights_only=True)``; clear errors name the path."""
    from invsolve.priors.loaders import load_checkpoint_file

    state = load_checkpoint_file(path)
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
        raise ValueError(f"{path}: not an invsolve training checkpoint")
    return state


def export_prior(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the EMA weights of a training checkpoint as a prior file (see :meth:`EDMPrior.save`)."""
    prior = EDMPrior.from_state(load_training_checkpoint(checkpoint), source=str(checkpoint))
    return prior.save(out)


def _load_initial_weights(path: str, prior_cfg: dict[str, Any], model: EDMDenoiser, ema: EMA) -> None:
    """Start ``model`` and ``ema`` from the prior at ``path`` (fine-tuning); its network must match ``prior_cfg``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"init_from: {path} is not a file (expected a prior file or training checkpoint)")
    initial = EDMPrior.from_checkpoint(path)
    keys = ("arch", "channels", "resolution", "width", "channel_mult", "num_blocks", "attn_resolutions", "sigma_data")
    differ = {k: (initial.config.get(k), prior_cfg[k]) for k in keys if initial.config.get(k) != prior_cfg[k]}
    if differ:
        raise ValueError(f"init_from: {path} has a different network; (its value, this run's) by key: {differ}")
    weights = initial.denoiser.net.state_dict()
    model.net.load_state_dict(weights)
    ema.module.net.load_state_dict(weights)


def train(config: TrainConfig | dict[str, Any], *, callback: Callable[[TrainStep], None] | None = None) -> TrainResult:
    """Train (or resume training) an EDM prior; see the module docstring.

    Writes into ``config.out_dir``: ``checkpoint.pt`` (resumable state), ``prior.pt`` (EMA prior,
    loadable with :meth:`EDMPrior.from_checkpoint`), ``loss.csv`` and ``config.json``. If
    ``checkpoint.pt`` exists and ``config.resume`` is true, training continues from it; the config
    must then match the checkpoint's except for ``steps``, ``checkpoint_every``, ``log_every``,
    ``max_wall_seconds``, ``device`` and ``out_dir``.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or a dict, got {type(config).__name__}")
    device = torch.device(config.device)
    out = Path(config.out_dir)  # created only once the data, the network and any initial weights are accepted
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {out} exists and is not a folder")
    ckpt_path, prior_path, log_path = out / CHECKPOINT_NAME, out / PRIOR_NAME, out / LOSS_LOG_NAME

    dataset = _dataset(config)
    channels = int(getattr(dataset, "channels", dataset[0].shape[0]))
    value_range = tuple(getattr(dataset, "value_range", (0.0, 1.0)))
    prior_cfg = config.prior_config(channels, value_range)
    prior = make_edm_prior(prior_cfg, seed=config.seed, device=device)
    model = prior.denoiser  # EDMDenoiser: preconditioning + network
    ema = EMA(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    generator = torch.Generator().manual_seed(config.seed)

    step, images, wall_before = 0, 0, 0.0
    loss_sum, loss_count = 0.0, 0
    if config.resume and ckpt_path.exists():
        state = load_training_checkpoint(ckpt_path)
        saved = state["config"]["train"]
        changed = config.fields_differing_from(saved)
        if changed:
            raise ValueError(
                f"{ckpt_path}: cannot resume, the config differs from the checkpoint's in {changed}; "
                "use a new out_dir or resume=False"
            )
        model.net.load_state_dict(state["model"])
        ema.module.net.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        _set_rng_state(state["rng"], device)
        step, images, wall_before = int(state["step"]), int(state["images"]), float(state["wall_s"])
        loss_sum, loss_count = float(state["loss_sum"]), int(state["loss_count"])
        _rewrite_loss_log(log_path, _read_loss_log(log_path, step))
    else:
        torch.manual_seed(config.seed)  # dropout draws from the global generator
        if config.init_from is not None:
            _load_initial_weights(config.init_from, prior_cfg, model, ema)
        out.mkdir(parents=True, exist_ok=True)
        _rewrite_loss_log(log_path, [])
    write_text_atomic(out / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")

    def save_checkpoint() -> None:
        state = {
            "format": TRAIN_FORMAT,
            "config": {"train": config.to_dict(), "prior": prior_cfg},
            "step": step,
            "images": images,
            "wall_s": wall_before + (time.monotonic() - start),
            "loss_sum": loss_sum,
            "loss_count": loss_count,
            "model": model.net.state_dict(),
            "ema": ema.module.net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rng": _rng_state(device),
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        exported = {
            "format": PRIOR_FORMAT,
            "config": prior_cfg,
            "state_dict": {k: v.detach().cpu() for k, v in ema.module.net.state_dict().items()},
        }
        with atomic_path(prior_path) as tmp:
            torch.save(exported, tmp)

    start = time.monotonic()
    last_logged = float("nan")
    stopped_early = False
    log_file = log_path.open("a", newline="")
    writer = csv.DictWriter(log_file, fieldnames=LOSS_LOG_FIELDS, lineterminator="\n")
    model.train()
    try:
        while step < config.steps:
            idx = torch.randint(len(dataset), (config.batch_size,), generator=generator)
            x0 = torch.stack([dataset[int(i)] for i in idx]).to(device)
            log_sigma = config.p_mean + config.p_std * torch.randn(config.batch_size, generator=generator, dtype=torch.float64)
            sigma = log_sigma.exp()
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            sigma, noise = sigma.to(device=device, dtype=x0.dtype), noise.to(device)
            denoised = model(x0 + sigma.reshape(-1, 1, 1, 1) * noise, sigma)
            weight = edm_loss_weight(sigma, config.sigma_data).reshape(-1, 1, 1, 1)
            loss = (weight * (denoised - x0).square()).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at step {step}")

            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            images += config.batch_size
            ema.update(model, ema_beta(config, images))

            loss_value = float(loss.detach())
            loss_sum += loss_value
            loss_count += 1
            if step % config.log_every == 0 or step == config.steps:
                last_logged = loss_sum / loss_count
                wall = wall_before + (time.monotonic() - start)
                row = {"step": step, "images": images, "loss": f"{last_logged:.6g}", "lr": f"{lr:.6g}", "wall_s": f"{wall:.1f}"}
                writer.writerow(row)
                log_file.flush()
                loss_sum, loss_count = 0.0, 0
            out_of_time = config.max_wall_seconds is not None and time.monotonic() - start >= config.max_wall_seconds
            saved = None
            if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
                save_checkpoint()
                saved = ckpt_path
            if callback is not None:
                callback(TrainStep(step=step, steps=config.steps, loss=loss_value, lr=lr, checkpoint=saved))
            if out_of_time and step < config.steps:
                stopped_early = True
                break
    finally:
        log_file.close()
        model.eval()
    if not ckpt_path.exists() or step == 0:
        save_checkpoint()
    if math.isnan(last_logged):
        rows = _read_loss_log(log_path, step)
        last_logged = float(rows[-1]["loss"]) if rows else float("nan")
    return TrainResult(
        step=step,
        checkpoint=ckpt_path,
        prior=prior_path,
        loss_log=log_path,
        final_loss=last_logged,
        wall_seconds=wall_before + (time.monotonic() - start),
        stopped_early=stopped_early,
    )
